"""Scoring: a model's head on labelled sentences (the one predict -> labels -> score path, used by training's
evaluation, `hstl-evaluate` and the comparison), and a predicted corpus file against a gold one (`hstl-score`).

Prediction is `hstl.inference.tagging` (windowed, every word predicted) and scoring is `hstl.scoring` (strict,
conlleval chunks, micro-averaged, equal to seqeval's default mode).
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any, Optional, Sequence

from .formats.common import PathLike
from .formats.conll import Sentence, read_conll
from .scoring import EntityScorer


def score_head(model, tokenizer, sentences: Sequence[Sentence], head: str, settings, *, accelerator=None,
               dataset=None, batching=None, source: Optional[PathLike] = None,
               show_progress: bool = False) -> EntityScorer:
    """Tags labelled `sentences` with the head `head` and scores the labels against theirs.

    The windows are batched as `predict.py`'s feed batches them (`hstl.inference.tagging.predict_windows`), so that
    what is scored is what `predict.py` tags with the same settings, dynamic int8 quantization included.

    Args:
        model: an `HSTLModel` (possibly prepared by `accelerator`).
        tokenizer: its fast tokenizer.
        sentences: labelled sentences.
        head: the task whose head tags them.
        settings: a `hstl.inference.loading.WindowSettings` (its max_length and overlap make the windows), as
            `window_settings` decides it for the model folder.
        accelerator: an `accelerate.Accelerator`; default: one on the model's device.
        dataset: the sentences already windowed by `build_task_dataset` with `settings` (training builds it once and
            scores it at every evaluation); default: built here.
        batching: a `hstl.inference.feed.FeedSettings` (`batch_tokens`, `max_windows`); default: `predict.py`'s.
        source: the CoNLL file `sentences` were read from (all of it): its windows are then batched within the
            pieces `predict.py` cuts it into (`sentence_pieces`); default: all sentences as one piece.
        show_progress: show a progress bar over batches.

    Returns:
        The filled `EntityScorer`: `.result()` for the scores, `.false_positives` / `.false_negatives` for errors.
    """
    from .inference.feed import FeedSettings
    from .inference.tagging import build_task_dataset, predict_labels

    if accelerator is None:
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=model.device.type == "cpu")
    batching = batching or FeedSettings()
    config = accelerator.unwrap_model(model).config
    if dataset is None:
        dataset = build_task_dataset(tokenizer, sentences, None, config.task_index(head), settings.max_length,
                                     settings.overlap)
    piece_starts = sentence_pieces(source, sentences, batching.piece_bytes) if source is not None else None
    predicted_ids = predict_labels(model, dataset, tokenizer, accelerator, [head],
                                   [len(sentence.tokens) for sentence in sentences], batching.max_windows,
                                   batching.batch_tokens, piece_starts, show_progress)[head]
    id2label = config.task_id2label(head)
    scorer = EntityScorer()
    for sentence, label_ids in zip(sentences, predicted_ids):
        scorer.add(sentence.labels, [id2label[label_id] for label_id in label_ids], tokens=sentence.tokens)
    return scorer


def sentence_pieces(path: PathLike, sentences: Sequence[Sentence], piece_bytes: int) -> list[int]:
    """The indices of the first sentence of each piece of the CoNLL file `path` (whose sentences, all of them, are
    `sentences`), cut into pieces of about `piece_bytes` as `predict.py` cuts it (`sharding.piece_ranges`)."""
    from .inference.sharding import piece_ranges, whole_file

    first_lines = [piece.first_line for piece in piece_ranges(whole_file(Path(path)), "conll", piece_bytes)]
    sentence_lines = [sentence.line for sentence in sentences]
    return sorted({bisect.bisect_left(sentence_lines, line) for line in first_lines} - {len(sentences)})


def error_records(scorer: EntityScorer, sentences: Sequence[Sentence]) -> list[dict[str, Any]]:
    """False positives then false negatives, each with its kind, the sentence's file line and its text."""
    records = []
    for kind, errors in (("false_positive", scorer.false_positives), ("false_negative", scorer.false_negatives)):
        for error in errors:
            sentence = sentences[error["sentence"]]
            records.append({"kind": kind, **error, "line": sentence.line, "sentence_text": " ".join(sentence.tokens)})
    return records


# ---------------------------------------------------------------------------------------------------------------------
# A predicted file against a gold file


def _token_mismatch(gold_path: PathLike, pred_path: PathLike, gold: Sentence, pred: Sentence) -> Optional[str]:
    """Where one predicted sentence departs from its gold sentence, as `PRED:LINE: expected ..., got ...`, or None.

    Token `i` of a sentence is on line `sentence.line + i` (a sentence's token lines are consecutive), and the line
    after its last token is the blank line (or end of file) that ends it.
    """
    end_of_sentence = None  # stands for the blank line after a sentence's last token
    for position in range(max(len(gold.tokens), len(pred.tokens))):
        gold_token = gold.tokens[position] if position < len(gold.tokens) else end_of_sentence
        pred_token = pred.tokens[position] if position < len(pred.tokens) else end_of_sentence
        if gold_token != pred_token:
            expected = "the end of the sentence" if gold_token is None else f"token {gold_token!r}"
            got = "the end of the sentence" if pred_token is None else repr(pred_token)
            return (
                f"{pred_path}:{pred.line + position}: expected {expected} ({gold_path}:{gold.line + position}), "
                f"got {got}"
            )
    return None


def check_same_text(gold_path: PathLike, pred_path: PathLike, gold: Sequence[Sentence],
                    pred: Sequence[Sentence]) -> None:
    """Raises ValueError at the first sentence or token where the predicted file differs from the gold file."""
    for gold_sentence, pred_sentence in zip(gold, pred):
        mismatch = _token_mismatch(gold_path, pred_path, gold_sentence, pred_sentence)
        if mismatch is not None:
            raise ValueError(mismatch)
    if len(pred) < len(gold):
        raise ValueError(
            f"{pred_path}: expected {len(gold)} sentences (as in {gold_path}), got {len(pred)}; "
            f"the first missing one is at {gold_path}:{gold[len(pred)].line}"
        )
    if len(pred) > len(gold):
        raise ValueError(
            f"{pred_path}:{pred[len(gold)].line}: expected the end of the file ({gold_path} has {len(gold)} "
            f"sentences), got sentence {len(gold) + 1}"
        )


def score_files(gold_path: Path, pred_path: Path) -> EntityScorer:
    """Reads both CoNLL files, checks they hold the same text, and scores every sentence.

    Raises:
        CorpusFormatError: naming the file and line of a malformed line (e.g. a label that is not IOB2).
        ValueError: naming both files and lines at the first sentence or token that differs.
        OSError: when a file cannot be read.
    """
    gold = read_conll(gold_path)
    pred = read_conll(pred_path)
    check_same_text(gold_path, pred_path, gold, pred)
    scorer = EntityScorer()
    for gold_sentence, pred_sentence in zip(gold, pred):
        scorer.add(gold_sentence.labels, pred_sentence.labels, tokens=gold_sentence.tokens)
    return scorer
