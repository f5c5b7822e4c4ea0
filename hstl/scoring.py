"""Strict entity-level scoring of IOB2 label sequences.

A mention counts as correct only when its type, first token and last token all match a gold mention. Chunks are read
with the start/end rules of conlleval.pl (the CoNLL shared-task scorer), so an `I-X` after `O` or after another type
opens a new mention instead of being discarded. Scores are micro-averaged over mentions, and the numbers equal
`seqeval.metrics` in its default mode, `zero_division` included, bit for bit (tests/test_scoring.py checks this).

Stdlib only: training, evaluation scripts and the `evaluate` metric module all import this file, and none of them
should need seqeval or numpy for it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Optional, Sequence

from labels_hstl import Chunk, extract_chunks


def precision_recall_f1(num_correct: int, num_pred: int, num_gold: int) -> dict[str, Any]:
    """Scores from mention counts; an undefined ratio is 0.0, as with seqeval's `zero_division="warn"` or 0.

    The F1 expression is evaluated in the same order as seqeval's so the floats are identical, not merely close.
    """
    precision = num_correct / num_pred if num_pred else 0.0
    recall = num_correct / num_gold if num_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "num_gold": num_gold,
        "num_pred": num_pred,
        "num_correct": num_correct,
    }


def _position_key(chunk: Chunk) -> tuple[int, int, str]:
    """Sort key putting chunks in sentence order: start, then end, then type."""
    entity_type, start, end = chunk
    return start, end, entity_type


def _chunk_record(sentence_index: int, chunk: Chunk, tokens: Optional[Sequence[str]]) -> dict[str, Any]:
    """One false positive or false negative for error analysis; `text` is None when no tokens were given."""
    entity_type, start, end = chunk
    return {
        "sentence": sentence_index,
        "type": entity_type,
        "start": start,
        "end": end,
        "text": " ".join(tokens[start:end]) if tokens is not None else None,
    }


class EntityScorer:
    """Accumulates strict entity-level counts sentence by sentence, e.g. batch by batch during evaluation.

    Example:
        >>> scorer = EntityScorer()
        >>> scorer.add(["B-DNA", "I-DNA", "O"], ["B-DNA", "O", "O"], tokens=["SCL", "locus", "by"])
        >>> scorer.result()["f1"]
        0.0
        >>> scorer.false_negatives
        [{'sentence': 0, 'type': 'DNA', 'start': 0, 'end': 2, 'text': 'SCL locus'}]

    Attributes:
        num_sentences: sentences added so far; the next `add` gets this index.
        false_positives: predicted mentions absent from the gold labels, as dicts with keys `sentence`, `type`,
            `start`, `end` (exclusive) and `text` (tokens joined by spaces, or None without tokens).
        false_negatives: gold mentions that were not predicted exactly, same keys.
    """

    def __init__(self) -> None:
        self.num_sentences = 0
        self.gold_counts: Counter[str] = Counter()
        self.pred_counts: Counter[str] = Counter()
        self.correct_counts: Counter[str] = Counter()
        self.false_positives: list[dict[str, Any]] = []
        self.false_negatives: list[dict[str, Any]] = []

    def add(
        self,
        gold_labels: Sequence[str],
        pred_labels: Sequence[str],
        tokens: Optional[Sequence[str]] = None,
    ) -> None:
        """Scores one sentence.

        Args:
            gold_labels: IOB2 labels, one per token.
            pred_labels: predicted IOB2 labels, one per token (same length).
            tokens: the sentence's tokens, only used for the `text` of false positives and negatives.

        Raises:
            ValueError: naming the sentence index when lengths differ or a label is not IOB2. Nothing is counted
                for a sentence that raises.
        """
        sentence_index = self.num_sentences
        if len(gold_labels) != len(pred_labels):
            raise ValueError(
                f"sentence {sentence_index}: expected {len(gold_labels)} predicted labels (one per gold label), "
                f"got {len(pred_labels)}"
            )
        if tokens is not None and len(tokens) != len(gold_labels):
            raise ValueError(
                f"sentence {sentence_index}: expected {len(gold_labels)} tokens (one per gold label), got {len(tokens)}"
            )
        gold_chunks = self._chunks(gold_labels, sentence_index, "gold")
        pred_chunks = self._chunks(pred_labels, sentence_index, "predicted")
        correct_chunks = gold_chunks & pred_chunks

        self.gold_counts.update(entity_type for entity_type, _, _ in gold_chunks)
        self.pred_counts.update(entity_type for entity_type, _, _ in pred_chunks)
        self.correct_counts.update(entity_type for entity_type, _, _ in correct_chunks)
        # Sorted by position so reports read in sentence order; sets have no order of their own.
        for chunk in sorted(pred_chunks - correct_chunks, key=_position_key):
            self.false_positives.append(_chunk_record(sentence_index, chunk, tokens))
        for chunk in sorted(gold_chunks - correct_chunks, key=_position_key):
            self.false_negatives.append(_chunk_record(sentence_index, chunk, tokens))
        self.num_sentences += 1

    @staticmethod
    def _chunks(labels: Sequence[str], sentence_index: int, side: str) -> set[Chunk]:
        """`extract_chunks` with the sentence index and side (gold or predicted) added to its error message."""
        try:
            return set(extract_chunks(labels))
        except ValueError as error:
            raise ValueError(f"sentence {sentence_index}, {side} labels, {error}") from None

    def result(self) -> dict[str, Any]:
        """Micro-averaged scores over all sentences added so far.

        Returns:
            `{"precision", "recall", "f1", "num_gold", "num_pred", "num_correct", "per_type"}`, where `per_type`
            maps every type seen in gold or predicted labels (sorted by name) to a dict with the same keys but
            `per_type`.
        """
        overall = precision_recall_f1(
            sum(self.correct_counts.values()), sum(self.pred_counts.values()), sum(self.gold_counts.values())
        )
        entity_types = sorted(set(self.gold_counts) | set(self.pred_counts))
        overall["per_type"] = {
            entity_type: precision_recall_f1(
                self.correct_counts[entity_type], self.pred_counts[entity_type], self.gold_counts[entity_type]
            )
            for entity_type in entity_types
        }
        return overall


def score_sentences(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Strict entity-level precision, recall and F1 of predicted against gold IOB2 labels.

    Args:
        gold: one list of labels per sentence.
        pred: predicted labels, same shape as `gold`.

    Returns:
        The dict of `EntityScorer.result`.

    Raises:
        ValueError: when the sentence counts differ, or naming the sentence index when a sentence's lengths differ
            or a label is not IOB2.

    Example:
        >>> result = score_sentences([["B-Disease", "I-Disease", "O"]], [["B-Disease", "I-Disease", "O"]])
        >>> result["f1"], result["per_type"]["Disease"]["num_gold"]
        (1.0, 1)
    """
    if len(gold) != len(pred):
        raise ValueError(f"expected {len(gold)} predicted sentences (one per gold sentence), got {len(pred)}")
    scorer = EntityScorer()
    for gold_labels, pred_labels in zip(gold, pred):
        scorer.add(gold_labels, pred_labels)
    return scorer.result()
