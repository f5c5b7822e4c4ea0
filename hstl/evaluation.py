"""Scoring: a model's head on labelled sentences (the one predict -> labels -> score path, used by training's
evaluation, `hstl-evaluate` and the comparison), a predicted corpus file against a gold one (`hstl-score`), and
running text against the corpus's own sentences (`compare_text_and_conll`, `python -m eval.text_vs_conll`).

Prediction is `hstl.inference.tagging` (windowed, every word predicted) and scoring is `hstl.scoring` (strict,
conlleval chunks, micro-averaged, equal to seqeval's default mode).
"""

from __future__ import annotations

import bisect
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Hashable, Iterable, Optional, Sequence

from .formats.common import PathLike
from .formats.conll import Sentence, read_conll
from .scoring import EntityScorer, precision_recall_f1
from text_hstl import is_blank, split_sentences


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


# ---------------------------------------------------------------------------------------------------------------------
# Running text against the corpus's own sentences


MAX_TEXT_CONLL_DIFFERENCE = 1.0
"""Largest |text-in F1 - CoNLL-in F1|, in F1 points, that `compare_text_and_conll` accepts."""


def score_spans(gold: Iterable[Hashable], predicted: Iterable[Hashable]) -> dict[str, Any]:
    """Exact-match precision, recall and F1 of predicted mentions (e.g. `(document, start, end)`) against gold ones."""
    gold_set, predicted_set = set(gold), set(predicted)
    return precision_recall_f1(len(gold_set & predicted_set), len(predicted_set), len(gold_set))


def _passage_starts(document) -> set[int]:
    """Where each passage's first non-blank character is: a sentence starts there whatever the splitter does."""
    starts = set()
    for passage in document.passages:
        first = next((index for index, character in enumerate(passage.text) if not is_blank(character)), None)
        if first is not None:
            starts.add(passage.offset + first)
    return starts


def split_starts(document) -> list[int]:
    """Where `text_hstl.split_sentences` starts sentences in the document's passages (document frame)."""
    return sorted(passage.offset + start for passage in document.passages
                  for start, _ in split_sentences(passage.text))


def boundary_agreement(documents: Sequence) -> dict[str, Any]:
    """Sentence boundaries inside passages: gold ones (`GoldDocument.sentence_starts`) that the splitter also
    finds, misses, and the ones it adds; documents without gold starts are counted apart. Each missed or added
    boundary is listed with its document and offset."""
    found, missed, added, unknown = 0, [], [], 0
    for document in documents:
        if document.sentence_starts is None:
            unknown += 1
            continue
        passage_starts = _passage_starts(document)
        gold = set(document.sentence_starts) - passage_starts
        split = set(split_starts(document)) - passage_starts
        found += len(gold & split)
        missed.extend((document.name, start) for start in sorted(gold - split))
        added.extend((document.name, start) for start in sorted(split - gold))
    gold_count = found + len(missed)
    return {"gold": gold_count, "found": found, "missed": len(missed), "added": len(added),
            "recall": found / gold_count if gold_count else 0.0, "documents_without_gold_boundaries": unknown,
            "missed_at": missed, "added_at": added}


def write_running_text(documents: Sequence, path: PathLike) -> list[list[int]]:
    """Writes each passage of each document as a paragraph of a UTF-8 text file (a blank line between passages),
    the input of predict.py's text path.

    Returns:
        Per document, per passage, where the passage starts in the file (characters).
    """
    starts, position, pieces = [], 0, []
    for document in documents:
        document_starts = []
        for passage in document.passages:
            if pieces:
                pieces.append("\n\n")
                position += 2
            document_starts.append(position)
            pieces.append(passage.text)
            position += len(passage.text)
        starts.append(document_starts)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("".join(pieces) + "\n")
    return starts


def text_in_mentions(model_dir: PathLike, documents: Sequence, head: str, work_dir: PathLike,
                     options=None) -> set[tuple[str, int, int]]:
    """Tags the documents as plain text through predict.py's path (`predict_path`: sentence splitting, word
    tokenization, windowing) with the head `head`; the predicted mentions as `(document name, start, end)` in the
    documents' frames."""
    from .inference.streaming import PredictionOptions, predict_path

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    text_path, output_path = work_dir / "running_text.txt", work_dir / "running_text.jsonl"
    passage_starts = write_running_text(documents, text_path)
    options = replace(options or PredictionOptions(), tasks=[head], input_format="text", show_progress=False)
    predict_path(model_dir, text_path, output_path, options)
    located = [(file_start, document, passage) for document, starts in zip(documents, passage_starts)
               for file_start, passage in zip(starts, document.passages)]
    file_starts = [file_start for file_start, _, _ in located]
    mentions = set()
    with open(output_path, encoding="utf-8") as handle:
        for line in handle:
            for entity in json.loads(line)["entities"]:
                file_start, document, passage = located[bisect.bisect_right(file_starts, entity["start"]) - 1]
                offset = passage.offset - file_start
                mentions.add((document.name, entity["start"] + offset, entity["end"] + offset))
    return mentions


def compare_text_and_conll(model_dir: PathLike, documents: Sequence, sentences: Sequence[Sentence], head: str,
                           work_dir: PathLike, *, options=None) -> dict[str, Any]:
    """Tags a corpus twice with one head, as its CoNLL sentences (`score_head`: "CoNLL-in") and as running text
    (`text_in_mentions`: "text-in"), and scores both at mention level: CoNLL-in with conlleval chunks, text-in by
    exact character spans against the documents' gold spans (the head tags one entity type, so spans decide).

    Returns:
        `{"conll_in", "text_in"}` scores (`precision_recall_f1`), `"difference"` (text-in F1 minus CoNLL-in F1, in
        points), `"within_limit"` (|difference| <= `MAX_TEXT_CONLL_DIFFERENCE`), `"boundaries"`
        (`boundary_agreement`), and the text-in false negatives and positives.
    """
    from .inference.loading import load_model_and_tokenizer, window_settings

    model_dir = Path(model_dir)
    settings = window_settings(model_dir, options.max_length if options else None,
                               options.overlap if options else None, options.batch_size if options else None)
    model, tokenizer = load_model_and_tokenizer(model_dir)
    conll_in = score_head(model, tokenizer, sentences, head, settings).result()
    del model
    predicted = text_in_mentions(model_dir, documents, head, work_dir, options)
    gold = {(document.name, start, end) for document in documents for start, end, _ in document.mentions}
    text_in = score_spans(gold, predicted)
    difference = 100 * (text_in["f1"] - conll_in["f1"])
    conll_in.pop("per_type", None)
    return {"conll_in": conll_in, "text_in": text_in, "difference": difference,
            "within_limit": abs(difference) <= MAX_TEXT_CONLL_DIFFERENCE, "boundaries": boundary_agreement(documents),
            "text_in_false_negatives": sorted(gold - predicted), "text_in_false_positives": sorted(predicted - gold)}
