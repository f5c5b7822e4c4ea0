"""Merging the mentions that several heads found in one sentence, for `predict.py`.

The rule itself lives once, in `mentions_hstl.py` (`MERGE_POLICIES`, `mention_confidence`, `merge_mentions`),
because the Hub pipeline and the token-classification model, which cannot import `hstl`, apply it too; this module
gives it `predict.py`'s `--merge` error message.

A mention's confidence (its `score` in every output) is the smallest CRF marginal, over the mention's words, of the
label the mention gives each word, and of "not I-<type>" at the word after the mention (when there is one): in
[0, 1], and never above any of those marginals.

Merge policies:
    "confidence" (default): collect the mentions of every head (type = the shared entity type of the head's label
        type, e.g. "Gene" for "Protein", see `entity_types_hstl.DEFAULT_ENTITY_TYPES`; task = the head), then keep
        mentions greedily from the highest confidence down, dropping any that overlaps one already kept; on equal
        confidence the longer mention (in words) wins, then the head listed first, then the earlier start. "mice"
        tagged GENE (Gene) at 0.55 by BC2GM and Species at 0.98 by linnaeus is Species, whichever head is listed
        first.
    "longest": the same on length alone: longest first, then the head listed first, then the earlier start.
    "none": nothing is resolved: every head's mentions, overlaps included.
"confidence" and "longest" leave no overlaps: the result becomes one IOB2 label sequence (rebuilt from the mentions,
so it is always valid IOB2) or one entity list.

Stdlib only (plus `mentions_hstl`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import mentions_hstl
from mentions_hstl import (
    MERGE_POLICIES, Mention, WordMarginals, collect_mentions, mention_confidence, mentions_to_labels, resolve_overlaps,
)

from ..errors import PredictionInputError

__all__ = ["MERGE_POLICIES", "Mention", "check_merge_policy", "collect_mentions", "mention_confidence",
           "merge_mentions", "mentions_to_labels", "resolve_overlaps"]


def check_merge_policy(merge: str) -> None:
    if merge not in MERGE_POLICIES:
        raise PredictionInputError(f"--merge: expected one of {list(MERGE_POLICIES)}, got {merge!r}")


def merge_mentions(labels_by_task: Mapping[str, Sequence[str]], merge: str = "confidence",
                   scores_by_task: Mapping[str, Sequence[WordMarginals]] | None = None,
                   entity_type_of: Mapping[str, Mapping[str, str]] | None = None) -> list[Mention]:
    """`mentions_hstl.merge_mentions` (one sentence's mentions from several heads, in the mapping's order, scored
    when the heads' word marginals are given, typed by `entity_type_of`: `HSTLConfig.entity_types`), with the
    `--merge` error of `check_merge_policy` for an unknown policy. The labels of a sentence tagged by the feed carry
    its mentions already collected (`hstl.inference.feed.SentenceLabels`), which are then used as they are."""
    check_merge_policy(merge)
    return mentions_hstl.merge_mentions(labels_by_task, merge, scores_by_task, entity_type_of=entity_type_of,
                                        mentions=getattr(labels_by_task, "mentions", None))

