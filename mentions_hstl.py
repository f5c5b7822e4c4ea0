# Copyright 2026 The HSTL developers. Licensed under the Apache License, Version 2.0.
"""Mentions of several heads: the mentions of each head's IOB2 labels, their confidence under the head's CRF
(`mention_confidence`) and the merge policies that resolve overlaps between heads (`merge_mentions`: the one
implementation `predict.py`, the pipeline and the token-classification model share).

Hub remote code, copied into every model folder with its `*_hstl.py` siblings. Standard library and `labels_hstl`.

Each head labels words with its CRF; a mention is a conlleval chunk of one head's labels. Its confidence
(`mention_confidence`, the `score` of every output) is the smallest CRF marginal, over the mention's words, of the
label the mention gives each word, and of "not I-<type>" at the word after the mention (when there is one): a number
in [0, 1], never above any of those marginals, and an upper bound of the probability of the exact span. Marginals come
from forward-backward over the words of a window (`modeling_hstl.crf_marginals`); a word's marginals are those of the
window that owns it, stitched as its label is (`stitch_words`). The exact span probability would need the forward and
backward scores of one window holding the whole span and the word after it, which windows do not guarantee; the
per-word rule does not need that. Overlapping mentions of several heads are resolved from the highest confidence
down (`MERGE_POLICIES`): e.g. "mice" tagged GENE at 0.55 by BC2GM and Species at 0.98 by linnaeus is Species.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# A model folder loads these files as the package `transformers_modules.<folder>` (relative imports); the installed
# package imports them as top-level modules. transformers' import check skips `try` blocks.
try:
    from .labels_hstl import OUTSIDE_LABEL, extract_chunks, split_label
except ImportError:
    from labels_hstl import OUTSIDE_LABEL, extract_chunks, split_label


MERGE_POLICIES = ("confidence", "longest", "none")
"""How the mentions of several heads on one sentence combine (`merge_mentions`); every policy first collects the
mentions of every head (type = the shared entity type of the head's label type, e.g. "Gene" for "Protein", see
`DEFAULT_ENTITY_TYPES`; label_type = the head's own; task = the head):

"confidence" (default): keep mentions greedily from the highest confidence (`mention_confidence`) down, dropping any
    that overlaps one already kept; on equal confidence the longer mention (in words) first, then the head listed
    first, then the earlier start. Needs each head's word marginals.
"longest": the same greedy rule on length alone: longer mentions first, then the head listed first, then the earlier
    start.
"none": nothing is resolved: every head's mentions, overlaps included.

"confidence" and "longest" leave no overlaps, so the result can become one IOB2 label sequence (`mentions_to_labels`).
"""

WordMarginals = Mapping[str, float]
"""One word's CRF marginals under one head: label -> probability (`word_marginals`)."""


@dataclass(frozen=True)
class Mention:
    """A mention found by one head: words `[start, end)` of a sentence, its shared entity type (`type`, see
    `DEFAULT_ENTITY_TYPES`), the head's own label type (`label_type`; the same as `type` when not given) and its
    confidence (`mention_confidence`) when the head's marginals are known."""

    start: int
    end: int
    type: str
    task: str
    score: float | None = None
    label_type: str | None = None

    def __post_init__(self) -> None:
        if self.label_type is None:
            object.__setattr__(self, "label_type", self.type)

    @property
    def length(self) -> int:
        return self.end - self.start


def word_marginals(labels: Sequence[str], probabilities: Iterable[Sequence[float]]) -> list[dict[str, float]]:
    """Per word, `{label: marginal}` from rows of probabilities in the order of a head's `labels`."""
    return [dict(zip(labels, row)) for row in probabilities]


def mention_confidence(labels: Sequence[str], marginals: Sequence[WordMarginals], start: int, end: int) -> float:
    """The confidence of the mention `[start, end)` that a head's IOB2 `labels` hold: the smallest CRF marginal, over
    the mention's words, of the label the mention gives each word (its label in `labels`), and of "not I-<type>" at
    the word after the mention, when there is one (1 minus the marginal of I-<type> there).

    So it lies in [0, 1], is never above any of those marginals, and bounds the probability of the whole span from
    above (the span is exactly the event that all these hold at once). Each word's marginals come from the window
    that owns it, so the rule applies unchanged across windows.
    """
    entity_type = split_label(labels[start])[1]
    confidence = min(marginals[position][labels[position]] for position in range(start, end))
    if end < len(labels):
        confidence = min(confidence, 1.0 - marginals[end].get(f"I-{entity_type}", 0.0))
    return min(1.0, max(0.0, confidence))


def collect_mentions(
    labels_by_task: Mapping[str, Sequence[str]], scores_by_task: Mapping[str, Sequence[WordMarginals]] | None = None,
    entity_type_of: Mapping[str, Mapping[str, str]] | None = None,
) -> list[Mention]:
    """Every head's mentions (conlleval chunk rules), head by head in the mapping's order, each scored by
    `mention_confidence` when `scores_by_task` holds its head's word marginals. `entity_type_of`
    (`HSTLConfig.entity_types`: task -> {label type: shared type}) gives each mention its shared type; without it, or
    for a label type it lacks, the type is the label type."""
    entity_type_of = entity_type_of or {}
    mentions = []
    for task, labels in labels_by_task.items():
        marginals = (scores_by_task or {}).get(task)
        if marginals is not None and len(marginals) != len(labels):
            raise ValueError(f"scores_by_task[{task!r}]: expected marginals of {len(labels)} words, got "
                             f"{len(marginals)}")
        for label_type, start, end in extract_chunks(labels):
            score = None if marginals is None else mention_confidence(labels, marginals, start, end)
            entity_type = entity_type_of.get(task, {}).get(label_type, label_type)
            mentions.append(Mention(start, end, entity_type, task, score, label_type))
    return mentions


def resolve_overlaps(mentions: Sequence[Mention], task_order: Sequence[str], merge: str = "longest") -> list[Mention]:
    """The "confidence" or "longest" policy (`MERGE_POLICIES`): mentions kept greedily in the policy's order, any that
    overlaps one already kept dropped.

    Returns:
        Non-overlapping mentions in sentence order.
    """
    rank = {task: position for position, task in enumerate(task_order)}

    def order(mention: Mention) -> tuple:
        by_length = (-mention.length, rank[mention.task], mention.start)
        return (-mention.score, *by_length) if merge == "confidence" else by_length

    kept: list[Mention] = []
    taken_words: set[int] = set()
    for mention in sorted(mentions, key=order):
        words = range(mention.start, mention.end)
        if taken_words.isdisjoint(words):
            kept.append(mention)
            taken_words.update(words)
    return sorted(kept, key=lambda mention: mention.start)


def merge_mentions(
    labels_by_task: Mapping[str, Sequence[str]],
    merge: str = "confidence",
    scores_by_task: Mapping[str, Sequence[WordMarginals]] | None = None,
    entity_type_of: Mapping[str, Mapping[str, str]] | None = None,
) -> list[Mention]:
    """One sentence's mentions from several heads under a merge policy (see `MERGE_POLICIES`).

    Args:
        labels_by_task: `{task: IOB2 labels of the sentence's words}`, heads in priority order.
        merge: a policy of `MERGE_POLICIES`.
        scores_by_task: `{task: per word, {label: CRF marginal}}` (`word_marginals`); each mention of a head listed
            gets its confidence as `score`. Required for every head by "confidence".
        entity_type_of: `HSTLConfig.entity_types`, the shared type of each head's label types (`collect_mentions`).

    Returns:
        Mentions sorted by start, then end, then head order; without overlaps for "confidence" and "longest".

    Raises:
        ValueError: an unknown policy, or "confidence" without the marginals of every head.
    """
    if merge not in MERGE_POLICIES:
        raise ValueError(f"merge: expected one of {list(MERGE_POLICIES)}, got {merge!r}")
    task_order = list(labels_by_task)
    if merge == "confidence":
        unscored = [task for task in task_order if (scores_by_task or {}).get(task) is None]
        if unscored:
            raise ValueError(f"merge 'confidence': expected the word marginals of every head in scores_by_task, got "
                             f"none for {unscored}")
    mentions = collect_mentions(labels_by_task, scores_by_task, entity_type_of=entity_type_of)
    if merge != "none":
        return resolve_overlaps(mentions, task_order, merge)
    rank = {task: position for position, task in enumerate(task_order)}
    return sorted(mentions, key=lambda mention: (mention.start, mention.end, rank[mention.task]))


def mentions_to_labels(mentions: Iterable[Mention], num_words: int) -> list[str]:
    """IOB2 labels of a sentence holding non-overlapping `mentions`."""
    labels = [OUTSIDE_LABEL] * num_words
    for mention in mentions:
        labels[mention.start] = f"B-{mention.type}"
        for position in range(mention.start + 1, mention.end):
            labels[position] = f"I-{mention.type}"
    return labels
