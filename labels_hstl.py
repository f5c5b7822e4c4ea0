# Copyright 2026 The HSTL developers. Licensed under the Apache License, Version 2.0.
"""IOB2 labels: the conventions (`OUTSIDE_LABEL`, `PAD_LABEL_ID`, `split_label`, `check_iob2_labels`), conlleval's
chunk rules (`extract_chunks`), the entity types of a label list (`entity_types`) and the merged label space of
several heads (`merged_labels`).

Hub remote code, copied into every model folder with its `*_hstl.py` siblings; the `hstl` package imports it too, so
training, scoring, prediction and the pipeline share one copy of each rule. Standard library only.
"""

from __future__ import annotations

from collections.abc import Sequence


OUTSIDE_LABEL = "O"
"""The IOB2 label of words outside every mention."""

PAD_LABEL_ID = -100
"""Label id (and prediction) of padding words: ignored by the loss (the PyTorch cross-entropy convention).

The collator pads `labels` with it, the model fills `predictions` with it, and the CRF loss skips it."""

CHUNK_TAGS = ("B", "I")

Chunk = tuple[str, int, int]
"""`(entity_type, start, end)` with `end` exclusive: `tokens[start:end]` is the mention."""


def split_label(label: str) -> tuple[str, str]:
    """Splits an IOB2 label into its tag and its entity type.

    `"B-Gene_or_gene_product"` gives `("B", "Gene_or_gene_product")`, `"I-Multi-tissue_structure"` gives
    `("I", "Multi-tissue_structure")` (only the first hyphen separates) and `"O"` gives `("O", "")`.

    Raises:
        ValueError: for anything else, e.g. IOBES tags (`E-X`, `S-X`), a bare `B`, or a missing type.
    """
    if label == OUTSIDE_LABEL:
        return OUTSIDE_LABEL, ""
    tag, separator, entity_type = label.partition("-")
    if tag not in CHUNK_TAGS or not separator or not entity_type:
        raise ValueError(f"expected an IOB2 label ('O', 'B-<type>' or 'I-<type>'), got {label!r}")
    return tag, entity_type


def _chunk_ends(previous_tag: str, tag: str, previous_type: str, entity_type: str) -> bool:
    """conlleval.pl's `endOfChunk` restricted to B/I/O: did a chunk end just before the current token?"""
    if previous_tag == OUTSIDE_LABEL:
        return False
    # A B or O closes the open chunk; so does any change of type (B-X I-Y is two chunks, not one).
    return tag in ("B", OUTSIDE_LABEL) or previous_type != entity_type


def _chunk_starts(previous_tag: str, tag: str, previous_type: str, entity_type: str) -> bool:
    """conlleval.pl's `startOfChunk` restricted to B/I/O: does a chunk start at the current token?"""
    if tag == OUTSIDE_LABEL:
        return False
    # B always starts a chunk; an I starts one when nothing of its type is open (after O, or after another type).
    return tag == "B" or previous_tag == OUTSIDE_LABEL or previous_type != entity_type


def extract_chunks(labels: Sequence[str]) -> list[Chunk]:
    """Finds the mentions in one sentence's IOB2 labels, following conlleval.pl.

    Args:
        labels: one label per token, e.g. `["B-DNA", "I-DNA", "O", "I-protein"]`.

    Returns:
        `(entity_type, start, end)` triples, end exclusive, in order of position, e.g.
        `[("DNA", 0, 2), ("protein", 3, 4)]`.

    Raises:
        ValueError: naming the position and the label when a label is not IOB2.
    """
    chunks: list[Chunk] = []
    previous_tag, previous_type = OUTSIDE_LABEL, ""
    chunk_start = 0
    # The extra "O" closes a chunk that runs to the end of the sentence.
    for position, label in enumerate([*labels, OUTSIDE_LABEL]):
        if label == OUTSIDE_LABEL and previous_tag == OUTSIDE_LABEL:
            continue  # nothing opens or closes between two O's, the commonest pair by far
        try:
            tag, entity_type = split_label(label)
        except ValueError as error:
            raise ValueError(f"position {position}: {error}") from None
        if _chunk_ends(previous_tag, tag, previous_type, entity_type):
            chunks.append((previous_type, chunk_start, position))
        if _chunk_starts(previous_tag, tag, previous_type, entity_type):
            chunk_start = position
        previous_tag, previous_type = tag, entity_type
    return chunks


def check_iob2_labels(labels: Sequence[str], where: str) -> None:
    """Raises `ValueError` naming `where` unless `labels` is a non-empty list of unique IOB2 labels."""
    if not labels:
        raise ValueError(f"{where}: expected a non-empty list of IOB2 labels, got {labels!r}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"{where}: expected unique labels, got duplicates in {labels!r}")
    for label in labels:
        if not isinstance(label, str):
            raise ValueError(f"{where}: expected IOB2 labels ('O', 'B-X', 'I-X'), got {label!r}")
        try:
            split_label(label)
        except ValueError:
            raise ValueError(f"{where}: expected IOB2 labels ('O', 'B-X', 'I-X'), got {label!r}") from None


def entity_types(labels: Sequence[str]) -> list[str]:
    """The entity types of IOB2 labels, sorted: `["O", "B-Gene", "I-Gene", "B-Chem"]` gives `["Chem", "Gene"]`."""
    return sorted({split_label(label)[1] for label in labels} - {""})


def merged_labels(label_lists: Sequence[Sequence[str]]) -> list[str]:
    """One IOB2 label space for several heads: `O`, then `B-<type>`, `I-<type>` for every entity type in order of first
    appearance. `[["O", "B-Chemical", "I-Chemical"], ["O", "B-Disease", "I-Disease", "B-Chemical", "I-Chemical"]]`
    gives `["O", "B-Chemical", "I-Chemical", "B-Disease", "I-Disease"]`: heads that share a type share its labels."""
    types = dict.fromkeys(split_label(label)[1] for labels in label_lists for label in labels)
    types.pop("", None)
    return [OUTSIDE_LABEL, *(f"{tag}-{entity_type}" for entity_type in types for tag in CHUNK_TAGS)]
