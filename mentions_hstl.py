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


def collect_mentions_of_sentences(
    labels_by_task: Mapping[str, Sequence[str]], label_ids_by_task: Mapping, marginals_by_task: Mapping | None,
    sentence_lengths: Sequence[int], entity_type_of: Mapping[str, Mapping[str, str]] | None = None,
) -> list[list[Mention]]:
    """`collect_mentions` of many sentences at once, from tensors rather than strings: per sentence, the same
    mentions in the same order with the same confidences (bit for bit), found by a few tensor operations over all
    the words of all the sentences, only the mentions becoming Python objects.

    Args:
        labels_by_task: `{task: the head's labels}` (label id -> IOB2 label), heads in priority order.
        label_ids_by_task: `{task: (num_words,) label ids}`, the words of the sentences one after the other.
        marginals_by_task: `{task: (num_words, num_labels) CRF marginals}` in the same word order (None: unscored).
        sentence_lengths: words per sentence, summing to `num_words`.
        entity_type_of: as in `collect_mentions`.
    """
    import torch

    entity_type_of = entity_type_of or {}
    mentions: list[list[Mention]] = [[] for _ in sentence_lengths]
    lengths = torch.tensor(list(sentence_lengths), dtype=torch.long)
    num_words = int(lengths.sum())
    if num_words == 0:
        return mentions
    # shape: (num_words,): each word's sentence, and whether it opens its sentence
    sentence_of_word = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    first_word = torch.zeros(num_words, dtype=torch.bool)
    first_word[(lengths.cumsum(0) - lengths)[lengths > 0]] = True
    sentence_start = (lengths.cumsum(0) - lengths).tolist()
    for task, labels in labels_by_task.items():
        tags, types = zip(*(split_label(label) for label in labels))
        type_names = sorted(set(types) - {""})
        # per label id: 0 for O, 1 for B, 2 for I; its type's index (-1 for O); the id of I-<type> of its type
        tag_code = torch.tensor([("O", "B", "I").index(tag) for tag in tags])
        type_code = torch.tensor([type_names.index(kind) if kind else -1 for kind in types])
        inside_id = {kind: labels.index(f"I-{kind}") for kind in type_names if f"I-{kind}" in labels}
        ids = torch.as_tensor(label_ids_by_task[task]).long()
        tag, kind = tag_code[ids], type_code[ids]
        # conlleval: a word continues the open chunk when it is I of the open chunk's type, in the same sentence
        continues = torch.zeros(num_words, dtype=torch.bool)
        continues[1:] = (tag[1:] == 2) & (tag[:-1] != 0) & (kind[1:] == kind[:-1])
        continues &= ~first_word
        in_chunk = tag != 0
        starts = torch.nonzero(in_chunk & ~continues).squeeze(1)
        next_continues = torch.cat([continues[1:], torch.zeros(1, dtype=torch.bool)])
        ends = torch.nonzero(in_chunk & ~next_continues).squeeze(1) + 1  # exclusive
        if len(starts) == 0:
            continue
        scores = [None] * len(starts)
        if marginals_by_task is not None and marginals_by_task.get(task) is not None:
            scores = _chunk_confidences(marginals_by_task[task], ids, in_chunk, starts, ends, kind, first_word,
                                        inside_id, type_names).tolist()
        chunk_types = [type_names[index] for index in kind[starts].tolist()]
        head_types = entity_type_of.get(task, {})
        for sentence, start, end, label_type, score in zip(sentence_of_word[starts].tolist(), starts.tolist(),
                                                            ends.tolist(), chunk_types, scores):
            offset = sentence_start[sentence]
            mentions[sentence].append(Mention(start - offset, end - offset, head_types.get(label_type, label_type),
                                              task, score, label_type))
    return mentions


def _chunk_confidences(marginals, ids, in_chunk, starts, ends, kind, first_word, inside_id: Mapping[str, int],
                       type_names: Sequence[str]):
    """`mention_confidence` of each chunk `[starts[c], ends[c])`, in float64 as Python computes it from float32
    marginals: the smallest marginal of the chunk's labels, and 1 minus the marginal of I-<type> at the next word of
    the same sentence."""
    import torch

    num_words = len(ids)
    # shape: (num_words,): each word's marginal of its own label, exactly as a Python float
    own = marginals.gather(1, ids.unsqueeze(1)).squeeze(1).double()
    chunk_of_word = torch.cumsum(torch.zeros(num_words, dtype=torch.long).index_fill_(0, starts, 1), 0) - 1
    confidences = torch.full((len(starts),), float("inf"), dtype=torch.float64)
    confidences.scatter_reduce_(0, chunk_of_word[in_chunk], own[in_chunk], "amin")
    # the word after the chunk, when the sentence goes on (a type without an I label gives 1 - 0, no bound)
    has_next = (ends < num_words) & ~first_word[ends.clamp(max=num_words - 1)]
    inside_of_type = torch.tensor([inside_id.get(name, -1) for name in type_names] or [-1])
    next_inside = inside_of_type[kind[starts]]  # shape: (num_chunks,); -1 where the type has no I label
    rows = has_next & (next_inside >= 0)
    if rows.any():
        after = 1.0 - marginals[ends[rows], next_inside[rows]].double()
        confidences[rows] = torch.minimum(confidences[rows], after)
    return confidences.clamp(0.0, 1.0)


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
    mentions: Sequence[Mention] | None = None,
) -> list[Mention]:
    """One sentence's mentions from several heads under a merge policy (see `MERGE_POLICIES`).

    Args:
        labels_by_task: `{task: IOB2 labels of the sentence's words}`, heads in priority order.
        merge: a policy of `MERGE_POLICIES`.
        scores_by_task: `{task: per word, {label: CRF marginal}}` (`word_marginals`); each mention of a head listed
            gets its confidence as `score`. Required for every head by "confidence".
        entity_type_of: `HSTLConfig.entity_types`, the shared type of each head's label types (`collect_mentions`).
        mentions: what `collect_mentions(labels_by_task, scores_by_task, entity_type_of)` gives, when already
            collected (`collect_mentions_of_sentences`).

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
    if mentions is None:
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
