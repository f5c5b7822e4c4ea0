# Copyright 2026 The HSTL developers. Licensed under the Apache License, Version 2.0.
"""Shared entity types: the label types of the corpora (as each spells them) mapped to one type per kind of entity
(`DEFAULT_ENTITY_TYPES`), and IOB2 labels rewritten over those shared types (`entity_label`, `to_entity_labels`,
`keep_entity_types`), so that heads trained on differently named corpora can be compared, selected and merged.

Hub remote code, copied into every model folder with its `*_hstl.py` siblings. Standard library and `labels_hstl`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

# A model folder loads these files as the package `transformers_modules.<folder>` (relative imports); the installed
# package imports them as top-level modules. transformers' import check skips `try` blocks.
try:
    from .labels_hstl import OUTSIDE_LABEL, split_label
except ImportError:
    from labels_hstl import OUTSIDE_LABEL, split_label


DEFAULT_ENTITY_TYPES: dict[str, str] = {
    # BC5CDR-chem, BioNLP11ID; BioNLP13CG/PC's small molecules and 13CG's amino acids are chemicals too.
    "Chemical": "Chemical", "Simple_chemical": "Chemical", "Amino_acid": "Chemical",
    # BC5CDR-disease, NCBI-disease; BioNLP13CG's cancers and pathological formations (tumours, lesions).
    "Disease": "Disease", "Cancer": "Disease", "Pathological_formation": "Disease",
    # Genes and their products, as gene taggers and normalisers (GNormPlus, PubTator) take them: BC2GM's GENE, the
    # BioNLP and Ex-PTM proteins, JNLPBA's protein, DNA and RNA (GENIA's gene, promoter and transcript names),
    # BioNLP13CG/PC's Gene_or_gene_product, BioNLP13PC's protein complexes and BioNLP11ID's regulons and operons.
    "GENE": "Gene", "Protein": "Gene", "protein": "Gene", "DNA": "Gene", "RNA": "Gene",
    "Gene_or_gene_product": "Gene", "Complex": "Gene", "Regulon-operon": "Gene",
    # linnaeus; BioNLP11ID and BioNLP13CG's organisms.
    "Species": "Species", "Organism": "Species",
    # JNLPBA; BioNLP13CG's Cell names cell types ("T cells") far more often than cell lines.
    "cell_line": "CellLine", "cell_type": "CellType", "Cell": "CellType",
    "Cellular_component": "CellularComponent",
    # BioNLP13CG's anatomy (AnatEM's classes).
    "Anatomical_system": "Anatomy", "Developing_anatomical_structure": "Anatomy",
    "Immaterial_anatomical_entity": "Anatomy", "Multi-tissue_structure": "Anatomy", "Organ": "Anatomy",
    "Organism_subdivision": "Anatomy", "Organism_substance": "Anatomy", "Tissue": "Anatomy",
}
"""Label type (as a corpus spells it) -> shared entity type, for every label type of the 13 corpora of
`../shared/data/bioner`. A head's label types keep their own name in `Mention.label_type`; outputs (`Mention.type`,
`predict.py`'s files, the pipeline's `entity_group`, `config.id2label`) use the shared type, so the mentions of heads
trained on differently named corpora can be compared, selected (`predict.py --entity_types`) and merged. A label type
missing here is its own shared type. `HSTLConfig.entity_types` holds the mapping of each head (these defaults, or a
run config's `model.entity_types` overrides)."""


def default_entity_type(label_type: str) -> str:
    """The shared entity type of a label type by default (`DEFAULT_ENTITY_TYPES`; an unknown type is kept)."""
    return DEFAULT_ENTITY_TYPES.get(label_type, label_type)


def entity_label(label: str, entity_type_of: Mapping[str, str]) -> str:
    """An IOB2 label with its label type replaced by its shared type: `"B-Protein"` and `{"Protein": "Gene"}` give
    `"B-Gene"` (a type missing from `entity_type_of` is kept)."""
    tag, label_type = split_label(label)
    return f"{tag}-{entity_type_of.get(label_type, label_type)}" if label_type else label


def to_entity_labels(labels: Sequence[str], entity_type_of: Mapping[str, str]) -> list[str]:
    """One sentence's IOB2 labels over shared types (`entity_label`), with the same mentions: an `I-` that starts a
    mention because the label type changed (`I-DNA I-protein`, two mentions) becomes `B-` when both types share an
    entity type (`I-Gene B-Gene`, not one `Gene` mention)."""
    shared, previous_type = [], ""
    for label in labels:
        tag, label_type = split_label(label)
        entity_type = entity_type_of.get(label_type, label_type)
        if tag == "I" and previous_type not in ("", label_type) and \
                entity_type_of.get(previous_type, previous_type) == entity_type:
            tag = "B"
        shared.append(f"{tag}-{entity_type}" if label_type else label)
        previous_type = label_type
    return shared


def keep_entity_types(labels: Sequence[str], entity_type_of: Mapping[str, str], wanted: Iterable[str]) -> list[str]:
    """A head's IOB2 labels with every label whose shared type (`entity_type_of`) is not `wanted` turned into `O`.

    The mentions of the wanted types are unchanged (conlleval's chunks of one type do not depend on the labels of
    other types around them), and merging then sees only them: a mention of an unwanted type never hides one of a
    wanted type."""
    wanted = set(wanted)
    kept = []
    for label in labels:
        label_type = split_label(label)[1]
        kept.append(label if label_type and entity_type_of.get(label_type, label_type) in wanted else OUTSIDE_LABEL)
    return kept
