"""Paired bootstrap test over test sentences: is system A's entity F1 different from system B's on this test set?

Both systems tag the same test sentences. A bootstrap sample draws as many sentences as the test set has, with
replacement, and scores both systems on it (strict entity micro F1, from per-sentence mention counts); the spread of
the F1 difference over many samples says how much of the observed difference the choice of test sentences alone could
produce (Koehn 2004; Berg-Kirkpatrick et al. 2012, who also discuss its limits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .scoring import precision_recall_f1, score_sentences


# Bootstrap samples drawn per matrix product: bounds memory at about CHUNK x num_sentences floats.
_CHUNK = 256


@dataclass
class BootstrapResult:
    """Outcome of `paired_bootstrap`; F1 values in [0, 1].

    `p_a_better` is the one-sided p-value of "A beats B" (the fraction of samples where A does not), `p_b_better`
    the other way round, and `p_two_sided` is `min(1, 2 * min(p_a_better, p_b_better))`.
    """

    f1_a: float
    f1_b: float
    delta: float
    p_a_better: float
    p_b_better: float
    p_two_sided: float
    num_samples: int
    num_sentences: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sentence_counts(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> np.ndarray:
    """Strict entity counts of every sentence: int64 array of shape `(num_sentences, 3)` holding, per sentence,
    `(num_correct, num_pred, num_gold)`; errors as `hstl.scoring.score_sentences`."""
    if len(gold) != len(pred):
        raise ValueError(f"expected {len(gold)} predicted sentences (one per gold sentence), got {len(pred)}")
    rows = []
    for gold_labels, pred_labels in zip(gold, pred):
        result = score_sentences([gold_labels], [pred_labels])
        rows.append((result["num_correct"], result["num_pred"], result["num_gold"]))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def _f1_of_totals(totals: np.ndarray) -> np.ndarray:
    """Micro F1 of count totals of shape `(..., 3)`, as `precision_recall_f1` computes it (0 where undefined)."""
    correct, predicted, gold = totals[..., 0], totals[..., 1], totals[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, correct / predicted, 0.0)
        recall = np.where(gold > 0, correct / gold, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return f1


def paired_bootstrap(counts_a: np.ndarray, counts_b: np.ndarray, num_samples: int = 10_000,
                     seed: int = 0) -> BootstrapResult:
    """Paired bootstrap of the entity F1 difference A - B over test sentences.

    Args:
        counts_a: `sentence_counts` of system A, shape `(num_sentences, 3)`.
        counts_b: `sentence_counts` of system B on the same sentences, same shape.
        num_samples: bootstrap samples, at least 1.
        seed: seed of the resampling.

    Raises:
        ValueError: if the shapes differ or are not `(n, 3)` with n >= 1, or if `num_samples` < 1.
    """
    counts_a, counts_b = np.asarray(counts_a, dtype=np.int64), np.asarray(counts_b, dtype=np.int64)
    if counts_a.ndim != 2 or counts_a.shape[1] != 3 or counts_a.shape != counts_b.shape or len(counts_a) == 0:
        raise ValueError(f"expected two count arrays of one shape (num_sentences >= 1, 3), got {counts_a.shape} and "
                         f"{counts_b.shape}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive integer, got {num_samples!r}")
    num_sentences = len(counts_a)
    f1_a = precision_recall_f1(*counts_a.sum(axis=0).tolist())["f1"]
    f1_b = precision_recall_f1(*counts_b.sum(axis=0).tolist())["f1"]
    both = np.concatenate([counts_a, counts_b], axis=1).astype(np.float64)  # shape: (num_sentences, 6)
    rng = np.random.default_rng(seed)
    deltas = []
    for start in range(0, num_samples, _CHUNK):
        size = min(_CHUNK, num_samples - start)
        # Each sample draws num_sentences sentence indices with replacement; one flat bincount turns them into how
        # often each sentence is drawn in each sample (ten times faster than numpy's multinomial over the sentences).
        indices = rng.integers(0, num_sentences, size=(size, num_sentences))
        indices += np.arange(size)[:, None] * num_sentences
        draws = np.bincount(indices.ravel(), minlength=size * num_sentences).reshape(size, num_sentences)
        totals = draws @ both  # shape: (size, 6)
        deltas.append(_f1_of_totals(totals[:, :3]) - _f1_of_totals(totals[:, 3:]))
    delta_samples = np.concatenate(deltas)
    p_a_better = float(np.mean(delta_samples <= 0))
    p_b_better = float(np.mean(delta_samples >= 0))
    return BootstrapResult(f1_a=f1_a, f1_b=f1_b, delta=f1_a - f1_b, p_a_better=p_a_better, p_b_better=p_b_better,
                           p_two_sided=min(1.0, 2 * min(p_a_better, p_b_better)), num_samples=num_samples,
                           num_sentences=num_sentences)


def unit_counts(counts: np.ndarray, unit_starts: Sequence[int]) -> np.ndarray:
    """Sentence counts summed over resampling units (documents, or blocks of consecutive sentences): the rows of
    `counts` from each start up to the next (the last unit runs to the end), shape `(num_units, 3)`. The paired
    bootstrap over these rows draws whole units, so the sentences of one unit stay together; F1 from summed counts is
    the same micro F1.

    Raises:
        ValueError: if the starts do not begin at 0 and rise strictly inside `range(len(counts))`.
    """
    counts = np.asarray(counts, dtype=np.int64)
    starts = list(unit_starts)
    if not starts or starts[0] != 0 or any(b <= a for a, b in zip(starts, starts[1:])) or starts[-1] >= len(counts):
        raise ValueError(f"unit_starts: expected rising sentence indices from 0 below {len(counts)}, got {starts[:10]}")
    return np.add.reduceat(counts, starts, axis=0)


def block_starts(num_sentences: int, block_size: int) -> list[int]:
    """The starts of consecutive blocks of `block_size` sentences (the last block may be shorter)."""
    if block_size < 1:
        raise ValueError(f"block_size: expected a positive number of sentences, got {block_size}")
    return list(range(0, num_sentences, block_size))
