"""Merging the mentions that several heads found in one sentence.

Merge policies:
    "longest" (default): collect the mentions of every head (type = the entity type in the head's labels, e.g.
        "Chemical"; task = the head), then keep mentions greedily from the longest (in words) down, dropping any that
        overlaps one already kept; between mentions of equal length the head listed first wins, and between mentions
        of one head and one length the earlier one. The result has no overlaps and becomes one IOB2 label sequence
        (rebuilt from the mentions, so it is always valid IOB2) or one entity list.
    "none": nothing is resolved: every head's mentions, overlaps included.

Stdlib only (plus `processing_hstl` for the conlleval chunk rules).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from processing_hstl import OUTSIDE_LABEL, extract_chunks

from ..errors import PredictionInputError


MERGE_POLICIES = ("longest", "none")


def check_merge_policy(merge: str) -> None:
    if merge not in MERGE_POLICIES:
        raise PredictionInputError(f"--merge: expected one of {list(MERGE_POLICIES)}, got {merge!r}")


@dataclass(frozen=True)
class Mention:
    """A mention found by one head: words `[start, end)` of a sentence."""

    start: int
    end: int
    type: str
    task: str

    @property
    def length(self) -> int:
        return self.end - self.start


def collect_mentions(labels_by_task: Mapping[str, Sequence[str]]) -> list[Mention]:
    """Every head's mentions (conlleval chunk rules), head by head in the mapping's order."""
    return [
        Mention(start, end, entity_type, task)
        for task, labels in labels_by_task.items()
        for entity_type, start, end in extract_chunks(labels)
    ]


def resolve_overlaps(mentions: Sequence[Mention], task_order: Sequence[str]) -> list[Mention]:
    """The "longest" policy: longer mentions first, the earlier head on equal length; overlapping ones dropped.

    Returns:
        Non-overlapping mentions in sentence order.
    """
    rank = {task: position for position, task in enumerate(task_order)}
    kept: list[Mention] = []
    taken_words: set[int] = set()
    for mention in sorted(mentions, key=lambda mention: (-mention.length, rank[mention.task], mention.start)):
        words = range(mention.start, mention.end)
        if taken_words.isdisjoint(words):
            kept.append(mention)
            taken_words.update(words)
    return sorted(kept, key=lambda mention: mention.start)


def merge_mentions(labels_by_task: Mapping[str, Sequence[str]], merge: str = "longest") -> list[Mention]:
    """One sentence's mentions from several heads (in the mapping's order) under a merge policy.

    Returns:
        Mentions sorted by start, then end, then head order; without overlaps for "longest".
    """
    check_merge_policy(merge)
    task_order = list(labels_by_task)
    mentions = collect_mentions(labels_by_task)
    if merge == "longest":
        return resolve_overlaps(mentions, task_order)
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
