"""Merging the mentions that several heads found in one sentence, for `predict.py`.

The rule itself lives once, in `processing_hstl.py` (`MERGE_POLICIES`, `merge_mentions`), because the Hub pipeline,
which cannot import `hstl`, applies it too; this module gives it `predict.py`'s `--merge` error message.

Merge policies:
    "longest" (default): collect the mentions of every head (type = the entity type in the head's labels, e.g.
        "Chemical"; task = the head), then keep mentions greedily from the longest (in words) down, dropping any that
        overlaps one already kept; between mentions of equal length the head listed first wins, and between mentions
        of one head and one length the earlier one. The result has no overlaps and becomes one IOB2 label sequence
        (rebuilt from the mentions, so it is always valid IOB2) or one entity list.
    "none": nothing is resolved: every head's mentions, overlaps included.

Stdlib only (plus `processing_hstl`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import processing_hstl
from processing_hstl import MERGE_POLICIES, Mention, collect_mentions, mentions_to_labels, resolve_overlaps

from ..errors import PredictionInputError

__all__ = ["MERGE_POLICIES", "Mention", "check_merge_policy", "collect_mentions", "merge_mentions",
           "mentions_to_labels", "resolve_overlaps"]


def check_merge_policy(merge: str) -> None:
    if merge not in MERGE_POLICIES:
        raise PredictionInputError(f"--merge: expected one of {list(MERGE_POLICIES)}, got {merge!r}")


def merge_mentions(labels_by_task: Mapping[str, Sequence[str]], merge: str = "longest") -> list[Mention]:
    """`processing_hstl.merge_mentions` (one sentence's mentions from several heads, in the mapping's order), with
    the `--merge` error of `check_merge_policy` for an unknown policy."""
    check_merge_policy(merge)
    return processing_hstl.merge_mentions(labels_by_task, merge)
