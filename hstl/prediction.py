"""Tagging new text with a trained HSTL model: CoNLL, plain text and PubTator in, predictions out, streamed.

`predict.py` is a thin command line over `predict_file`; the pieces are usable on their own:

- `load_model_and_tokenizer(folder)`, `resolve_tasks(config, names)`, `window_settings(folder, ...)`;
- `tag_sentences(model, tokenizer, sentences_tokens, tasks)` -> `{task: [[label, ...], ...]}`, one encoder pass for
  all chosen heads (`hstl.inference`), every word of every sentence labelled, long sentences windowed;
- `merge_mentions(labels_by_task, policy)`: the mentions of one sentence from several heads;
- readers that stream units lazily (`iter_conll_sentences`, `iter_text_sentences`, `iter_pubtator_documents`) and
  the writers behind `predict_file`.

Merge policies (one sentence, several heads):
    "longest" (default): collect the mentions of every head (type = the entity type in the head's labels, e.g.
        "Chemical"; task = the head), then keep mentions greedily from the longest (in words) down, dropping any that
        overlaps one already kept; between mentions of equal length the head listed first in `tasks` wins. The
        result has no overlaps and becomes one IOB2 label sequence (rebuilt from the mentions, so it is always valid
        IOB2) or one entity list.
    "none": nothing is resolved. CoNLL output gets one label column per head, in `tasks` order, each head's labels
        as predicted; text and PubTator output list every head's mentions, overlaps included.

Formats (picked from the input file name, or forced):
    conll (.tsv, .conll, .iob): one token per line, blank line after each sentence, `-DOCSTART-` markers. Only the
        first column is read (a gold label column is ignored, not copied); the output has the tokens verbatim, the
        document markers, and exactly one label (or one per head with merge "none") per input token.
    text (.txt): UTF-8 text; sentences and words from `processing_hstl`. Output is JSON Lines, one object per sentence:
        `{"text", "start", "end", "entities": [{"start", "end", "text", "type", "task"}]}`. Offsets are characters
        (end exclusive) into the whole input as `open(path, encoding="utf-8-sig", newline="").read()` returns it: a
        leading byte order mark is not counted and a CRLF line end counts as two characters. U+0085, U+2028 and
        U+2029 are written as JSON escapes, so that each object is one line for any line splitter.
    pubtator (.pubtator, .pubtator.txt): documents of passage lines `PMID|t|title`, `PMID|a|abstract` (any passage
        key is accepted; passage offsets follow PubTator: each starts one character after the end of the previous),
        then annotation lines, with a blank line between documents. The output repeats the passage lines verbatim and
        REPLACES the input's annotation (and relation) lines with predicted ones,
        `PMID<TAB>start<TAB>end<TAB>mention<TAB>type<TAB>HSTL:task`, so a file is never a mix of gold and predicted
        annotations; score against the gold file instead.

Streaming and resuming: `predict_file` reads the input twice, lazily: once to check all of it (so a malformed line at
the end fails in seconds, not after hours of tagging) and count units for the progress bar, then in chunks of
`chunk_size` units (sentences; documents for PubTator): tag, write, flush. Memory is bounded by a chunk (and by the
longest sentence), not by the file. Output goes to `OUT.partial`; after each chunk, `OUT.progress.json` records the
units done and the bytes of `OUT.partial` that hold them. `resume=True` truncates `OUT.partial` to those bytes, skips
the units done and carries on; at the end `OUT.partial` becomes `OUT`. A resumed run's output equals an
uninterrupted one's.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import io
import itertools
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar, Union

# The CoNLL parser itself is data.py's private one, so that streamed and whole-file reading cannot disagree.
from .data import _TRAILING_WHITESPACE, _parse_conll_lines
from processing_hstl import OUTSIDE_LABEL, extract_chunks

from .data import DOCSTART, CorpusFormatError, Sentence, write_conll
from processing_hstl import split_sentences, tokenize

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
Unit = TypeVar("Unit")

INPUT_FORMATS = ("conll", "text", "pubtator")
FORMAT_BY_SUFFIX = {".tsv": "conll", ".conll": "conll", ".iob": "conll", ".txt": "text", ".pubtator": "pubtator"}
"""File extension -> input format; a name ending in `.pubtator.txt` is PubTator, not text."""

MERGE_POLICIES = ("longest", "none")
DEFAULT_CHUNK_SIZE = 1000
PARTIAL_SUFFIX = ".partial"
PROGRESS_SUFFIX = ".progress.json"
PUBTATOR_SOURCE_PREFIX = "HSTL:"
"""Last column of a predicted PubTator annotation: `HSTL:<task>` says which head found it."""

_CONLL_LINES_PER_PARSE = 20_000
"""CoNLL lines parsed together (then cut at the next sentence end): few parser calls, bounded memory."""
_TEXT_CHARACTERS_PER_SPLIT = 65_536
"""Text buffered before complete sentences are split off a paragraph that has not ended yet."""
_PASSAGE_LINE = re.compile(r"(?P<pmid>[^|\t]+)\|(?P<key>[^|\t]+)\|(?P<text>.*)", re.DOTALL)
_SENTENCE_START_NOTE = re.compile(r"starts at line (\d+)")


class PredictionInputError(ValueError):
    """An argument or an input of prediction cannot be used; the message names it, what was expected and what came."""


# ---------------------------------------------------------------------------------------------------------------------
# Model, tasks and settings


def load_model_config(model_dir: PathLike):
    """The `HSTLConfig` of a model folder (cheap: no weights), after checking the folder is one."""
    from configuration_hstl import HSTLConfig

    folder = Path(model_dir)
    if not (folder / "config.json").is_file():
        got = "a folder without config.json" if folder.is_dir() else "no such folder"
        raise FileNotFoundError(f"{folder}: expected a model folder holding config.json, got {got}")
    config = HSTLConfig.from_pretrained(folder)
    if not config.tasks:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
        raise PredictionInputError(
            f"{folder}: expected an HSTL model folder (model_type 'hstl' with task heads), got model_type "
            f"{model_type!r} without tasks"
        )
    return config


def load_tokenizer_of(model_dir: PathLike):
    """The fast tokenizer saved in a model folder; a missing or slow one is a `PredictionInputError`."""
    from .tokenization import load_tokenizer

    try:
        return load_tokenizer(model_dir)
    except (OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PredictionInputError(f"{model_dir}: expected a fast tokenizer saved in the model folder ({first_line})") from None


def load_model_and_tokenizer(model_dir: PathLike):
    """`(HSTLModel, fast tokenizer)` from a model folder as `train.py` saves it; the model is in eval mode."""
    from modeling_hstl import HSTLModel

    config = load_model_config(model_dir)
    tokenizer = load_tokenizer_of(model_dir)
    model = HSTLModel.from_pretrained(model_dir, config=config)
    model.eval()
    return model, tokenizer


def resolve_tasks(config, tasks: Sequence[str] | None) -> list[str]:
    """The heads to tag with, in the order given (all of the model's, in its order, when `tasks` is None).

    Raises:
        PredictionInputError: naming `--tasks` and listing the known tasks, for an unknown or repeated name.
    """
    known = list(config.task_names)
    if tasks is None:
        return known
    names = [tasks] if isinstance(tasks, str) else list(tasks)
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise PredictionInputError(f"--tasks: expected task names among the model's {known}, got {unknown or names}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise PredictionInputError(f"--tasks: expected each task once, got {repeated} more than once")
    return names


@dataclass(frozen=True)
class WindowSettings:
    """How sentences become encoder windows and batches."""

    max_length: int
    overlap: int
    batch_size: int


def window_settings(
    model_dir: PathLike, max_length: int | None = None, overlap: int | None = None, batch_size: int | None = None
) -> WindowSettings:
    """Given values win; then the model folder's `run_config.yaml` (what the model was trained with); then the
    defaults of `hstl.run_config.TrainingSpec` (what `train.py` would have used)."""
    from .run_config import TrainingSpec, load_run_config

    saved = Path(model_dir) / "run_config.yaml"
    training = load_run_config(saved).training if saved.is_file() else TrainingSpec()
    settings = WindowSettings(
        max_length=training.max_length if max_length is None else max_length,
        overlap=training.window_overlap if overlap is None else overlap,
        batch_size=training.eval_batch_size if batch_size is None else batch_size,
    )
    if settings.batch_size < 1:
        raise PredictionInputError(f"--batch_size: expected a positive number of windows, got {settings.batch_size}")
    return settings


def check_window_settings(tokenizer, settings: WindowSettings) -> None:
    """Raises `PredictionInputError` naming `--max_length`/`--overlap` when the tokenizer cannot window with them."""
    from processing_hstl import make_windowing_map_fn

    try:
        make_windowing_map_fn(tokenizer, {}, 0, settings.max_length, settings.overlap)
    except ValueError as error:
        raise PredictionInputError(f"--max_length/--overlap: {error}") from None


def check_merge_policy(merge: str) -> None:
    if merge not in MERGE_POLICIES:
        raise PredictionInputError(f"--merge: expected one of {list(MERGE_POLICIES)}, got {merge!r}")


# ---------------------------------------------------------------------------------------------------------------------
# Tagging


@contextlib.contextmanager
def _datasets_progress_bars_off() -> Iterator[None]:
    """Windowing one chunk is quick: a `datasets.map` progress bar per chunk would only bury the real one."""
    import datasets

    were_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not were_disabled:
            datasets.enable_progress_bars()


def tag_sentences(
    model,
    tokenizer,
    sentences_tokens: Sequence[Sequence[str]],
    tasks: Sequence[str] | None = None,
    *,
    batch_size: int = 64,
    max_length: int | None = None,
    overlap: int | None = None,
    accelerator=None,
    show_progress: bool = False,
) -> dict[str, list[list[str]]]:
    """Labels every word of every sentence with each chosen head, from one encoder pass per batch.

    Args:
        model: an `HSTLModel` (possibly prepared by `accelerator`).
        tokenizer: its fast tokenizer.
        sentences_tokens: sentences as lists of words; any strings, empty sentences included.
        tasks: head names (default: all of the model's, in its order).
        batch_size: windows per batch.
        max_length: sub-tokens per window, special tokens included; longer sentences are windowed, not truncated.
            Default: train.py's (`hstl.run_config.TrainingSpec`).
        overlap: sub-tokens of context shared by consecutive windows of a long sentence. Default: train.py's.
        accelerator: an `accelerate.Accelerator`; default: one on the model's device.
        show_progress: show a progress bar over batches.

    Returns:
        Task name -> per sentence, one IOB2 label per word (`[]` for an empty sentence), in the order of `tasks`.
    """
    from processing_hstl import HSTLDataCollator
    from .inference import build_task_dataset, predict_labels
    from .run_config import TrainingSpec

    max_length = TrainingSpec.max_length if max_length is None else max_length
    overlap = TrainingSpec.window_overlap if overlap is None else overlap
    if accelerator is None:
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=model.device.type == "cpu")
    config = accelerator.unwrap_model(model).config
    task_names = resolve_tasks(config, tasks)
    sentences = [list(tokens) for tokens in sentences_tokens]
    labels: dict[str, list[list[str]]] = {name: [[] for _ in sentences] for name in task_names}
    # An empty sentence has no window; it gets its (empty) label list without a trip through the model.
    non_empty = [index for index, tokens in enumerate(sentences) if tokens]
    if not non_empty:
        return labels
    with _datasets_progress_bars_off():
        dataset = build_task_dataset(tokenizer, [sentences[index] for index in non_empty], None, 0, max_length, overlap)
    label_ids = predict_labels(
        model, dataset, HSTLDataCollator(tokenizer), accelerator, task_names,
        [len(sentences[index]) for index in non_empty], batch_size=batch_size, show_progress=show_progress,
    )
    for name in task_names:
        id2label = config.task_id2label(name)
        for index, sentence_label_ids in zip(non_empty, label_ids[name]):
            labels[name][index] = [id2label[label_id] for label_id in sentence_label_ids]
    return labels


def labels_per_sentence(labels_by_task: Mapping[str, Sequence[Sequence[str]]]) -> list[dict[str, list[str]]]:
    """`{task: [sentence labels, ...]}` -> `[{task: sentence labels}, ...]`, tasks kept in order."""
    counts = {len(per_sentence) for per_sentence in labels_by_task.values()}
    assert len(counts) <= 1, "every task labels the same sentences"
    num_sentences = counts.pop() if counts else 0
    return [{task: list(per_sentence[index]) for task, per_sentence in labels_by_task.items()}
            for index in range(num_sentences)]


# ---------------------------------------------------------------------------------------------------------------------
# Merging the heads' mentions


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
    """One sentence's mentions from several heads under a merge policy (see the module docstring).

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


# ---------------------------------------------------------------------------------------------------------------------
# Reading, lazily


def _decoded_lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """`(1-based line number, line with its "\\n")` of a UTF-8 file, read lazily; a leading byte order mark is
    dropped. Lines end at "\\n" only, as in `hstl.data.read_conll`: U+2028 or U+0085 stay inside their line."""
    with open(path, "rb") as handle:
        for line_number, raw_line in enumerate(handle, start=1):
            if line_number == 1 and raw_line.startswith(codecs.BOM_UTF8):
                raw_line = raw_line[len(codecs.BOM_UTF8):]
            try:
                line = raw_line.decode("utf-8")
            except UnicodeDecodeError as error:
                bad_bytes = raw_line[error.start : error.end].hex(" ")
                got = f"byte(s) {bad_bytes} at byte {error.start + 1} of the line"
                raise CorpusFormatError(path, line_number, "expected UTF-8 text", got) from None
            yield line_number, line


def _parse_conll_block(lines: list[str], path: PathLike, first_line: int) -> list[Sentence]:
    """`hstl.data`'s own parser on lines that start at line `first_line` of the file and end after a sentence."""
    shift = first_line - 1
    try:
        sentences = _parse_conll_lines(lines, path, labelled=False)
    except CorpusFormatError as error:
        got = _SENTENCE_START_NOTE.sub(lambda match: f"starts at line {int(match.group(1)) + shift}", error.got)
        raise CorpusFormatError(path, error.line + shift, error.expected, got) from None
    for sentence in sentences:
        sentence.line += shift
    return sentences


def iter_conll_sentences(path: PathLike) -> Iterator[Sentence]:
    """The sentences of a CoNLL file, read lazily, exactly as `hstl.data.read_conll(path, labelled=False)` gives them.

    Raises:
        CorpusFormatError: naming the file and line, as `read_conll` would.
    """
    block: list[str] = []
    block_first_line, line_count, found_sentence = 1, 0, False
    previous_line = ""
    for line_count, line in _decoded_lines(path):
        line = line[:-1] if line.endswith("\n") else line
        block.append(line)
        blank = not line.rstrip(_TRAILING_WHITESPACE)
        # Cut only where a sentence just ended: a `-DOCSTART-` marker then stays with the sentence it belongs to.
        ends_sentence = blank and previous_line.rstrip(_TRAILING_WHITESPACE) and not previous_line.startswith(DOCSTART)
        if ends_sentence and len(block) >= _CONLL_LINES_PER_PARSE:
            for sentence in _parse_conll_block(block, path, block_first_line):
                found_sentence = True
                yield sentence
            block, block_first_line = [], line_count + 1
        previous_line = line
    for sentence in _parse_conll_block(block, path, block_first_line):
        found_sentence = True
        yield sentence
    if not found_sentence:
        got = "an empty file" if line_count == 0 else f"no token line in {line_count} line(s)"
        raise CorpusFormatError(path, max(line_count, 1), "expected at least one sentence (token lines)", got)


@dataclass
class TextSentence:
    """A sentence of plain text with its words; all offsets are characters into the whole input, end exclusive."""

    text: str
    start: int
    end: int
    tokens: list[tuple[str, int, int]]

    @property
    def words(self) -> list[str]:
        return [token for token, _, _ in self.tokens]


def _text_sentences(text: str, offset: int) -> list[TextSentence]:
    """The sentences of `text`, which starts at character `offset` of the input."""
    return [
        TextSentence(text[start:end], offset + start, offset + end, tokenize(text[start:end], offset + start))
        for start, end in split_sentences(text)
    ]


def iter_text_sentences(path: PathLike) -> Iterator[TextSentence]:
    """The sentences of a UTF-8 text file, read lazily (a paragraph at a time, or 64k characters of a long one).

    `processing_hstl` boundaries depend only on the text around them, so a paragraph split piece by piece (each piece
    starting where a sentence starts) gives the same sentences as split whole.

    Raises:
        CorpusFormatError: naming the file and line, for bytes that are not UTF-8 or a file without any text.
    """
    buffer: list[str] = []
    buffered_characters, buffer_start, position, found_sentence, line_count = 0, 0, 0, False, 0
    next_split_at = _TEXT_CHARACTERS_PER_SPLIT
    for line_count, line in _decoded_lines(path):
        if line.isspace():  # a paragraph break: everything buffered is complete
            for sentence in _text_sentences("".join(buffer), buffer_start):
                found_sentence = True
                yield sentence
            buffer, buffered_characters, buffer_start = [], 0, position + len(line)
            next_split_at = _TEXT_CHARACTERS_PER_SPLIT
        else:
            buffer.append(line)
            buffered_characters += len(line)
        position += len(line)
        if buffered_characters >= next_split_at:
            # The last sentence may go on in the next line: keep it (and what follows it) buffered.
            sentences = _text_sentences("".join(buffer), buffer_start)
            for sentence in sentences[:-1]:
                found_sentence = True
                yield sentence
            if len(sentences) > 1:
                carried = "".join(buffer)[sentences[-1].start - buffer_start :]
                buffer, buffered_characters, buffer_start = [carried], len(carried), sentences[-1].start
            next_split_at = buffered_characters + _TEXT_CHARACTERS_PER_SPLIT  # linear, even for one huge sentence
    for sentence in _text_sentences("".join(buffer), buffer_start):
        found_sentence = True
        yield sentence
    if not found_sentence:
        got = "an empty file" if line_count == 0 else f"only whitespace in {line_count} line(s)"
        raise CorpusFormatError(path, max(line_count, 1), "expected some text to tag", got)


@dataclass
class PubTatorPassage:
    """One `PMID|key|text` line; `offset` is where its text starts in the document's character frame."""

    key: str
    text: str
    offset: int


@dataclass
class PubTatorDocument:
    """A PubTator document: its passages (input annotation lines are not kept) and their sentences."""

    pmid: str
    passages: list[PubTatorPassage]
    line: int

    @functools.cached_property
    def sentences(self) -> list[TextSentence]:
        """Sentences of every passage, offsets in the document's frame (a sentence never spans two passages)."""
        return [sentence for passage in self.passages for sentence in _text_sentences(passage.text, passage.offset)]


def _pubtator_error(path: PathLike, line_number: int, expected: str, line: str) -> CorpusFormatError:
    shown = line if len(line) <= 80 else line[:77] + "..."
    return CorpusFormatError(path, line_number, expected, repr(shown))


def iter_pubtator_documents(path: PathLike) -> Iterator[PubTatorDocument]:
    """The documents of a PubTator file, read lazily.

    A document is its passage lines (`PMID|t|...`, `PMID|a|...`) and then its annotation lines (`PMID<TAB>...`);
    documents are separated by blank lines (a passage line with a new PMID also starts a new document).

    Raises:
        CorpusFormatError: naming the file and line, for a line that is none of these, an annotation line before any
            passage or with another document's PMID, bytes that are not UTF-8, or a file without documents.
    """
    document: PubTatorDocument | None = None
    next_offset, seen_annotation, found_document, line_count = 0, False, False, 0
    for line_count, raw_line in _decoded_lines(path):
        line = raw_line.rstrip("\n").removesuffix("\r")
        passage = _PASSAGE_LINE.fullmatch(line)
        if not line.strip():
            if document is not None:
                found_document = True
                yield document
            document = None
        elif passage is not None:
            if document is not None and passage["pmid"] != document.pmid:
                found_document = True
                yield document
                document = None
            if document is None:
                document, next_offset, seen_annotation = PubTatorDocument(passage["pmid"], [], line_count), 0, False
            elif seen_annotation:
                raise _pubtator_error(
                    path, line_count, f"expected the passage lines of document {document.pmid} before its annotations",
                    line,
                )
            document.passages.append(PubTatorPassage(passage["key"], passage["text"], next_offset))
            next_offset += len(passage["text"]) + 1
        elif "\t" in line:
            pmid = line.split("\t", 1)[0]
            if document is None:
                expected = "expected a passage line 'PMID|t|text' before annotations"
                raise _pubtator_error(path, line_count, expected, line)
            if pmid != document.pmid:
                raise _pubtator_error(
                    path, line_count, f"expected an annotation line of document {document.pmid} (or a blank line)", line
                )
            seen_annotation = True  # dropped: predictions replace the input's annotations
        else:
            raise _pubtator_error(
                path, line_count,
                "expected a passage line 'PMID|t|text', an annotation line 'PMID<TAB>...' or a blank line", line,
            )
    if document is not None:
        found_document = True
        yield document
    if not found_document:
        got = "an empty file" if line_count == 0 else f"no passage line in {line_count} line(s)"
        raise CorpusFormatError(path, max(line_count, 1), "expected at least one document ('PMID|t|title' lines)", got)


# ---------------------------------------------------------------------------------------------------------------------
# Writing


def render_conll_sentence(sentence: Sentence, labels_by_task: Mapping[str, Sequence[str]], merge: str) -> str:
    """A sentence in CoNLL form: its document marker if any, `token<TAB>label(s)` lines, a blank line."""
    columns = list(labels_by_task.values())
    if merge == "none" and len(columns) > 1:
        marker = DOCSTART + f"\t{OUTSIDE_LABEL}" * len(columns) + "\n\n" if sentence.starts_document else ""
        lines = ["\t".join((token, *labels)) for token, labels in zip(sentence.tokens, zip(*columns))]
        return marker + "\n".join(lines) + "\n\n"
    if merge == "none":
        labels = list(columns[0])
    else:
        labels = mentions_to_labels(merge_mentions(labels_by_task, merge), len(sentence.tokens))
    block = io.StringIO()
    write_conll(block, [Sentence(sentence.tokens, labels, sentence.line, sentence.starts_document)])
    return block.getvalue()


def _entity_record(sentence: TextSentence, mention: Mention) -> dict[str, Any]:
    start, end = sentence.tokens[mention.start][1], sentence.tokens[mention.end - 1][2]
    text = sentence.text[start - sentence.start : end - sentence.start]
    return {"start": start, "end": end, "text": text, "type": mention.type, "task": mention.task}


def sentence_entities(sentence: TextSentence, labels_by_task: Mapping[str, Sequence[str]], merge: str) -> list[dict]:
    """The entities of a text sentence with character offsets (the sentence's frame), under a merge policy."""
    return [_entity_record(sentence, mention) for mention in merge_mentions(labels_by_task, merge)]


_LINE_BREAKS_INSIDE_JSON = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def render_text_sentence(sentence: TextSentence, labels_by_task: Mapping[str, Sequence[str]], merge: str) -> str:
    """One JSON line: the sentence, its offsets and its entities."""
    record = {"text": sentence.text, "start": sentence.start, "end": sentence.end,
              "entities": sentence_entities(sentence, labels_by_task, merge)}
    line = json.dumps(record, ensure_ascii=False)
    # JSON may hold U+0085, U+2028 and U+2029 raw, but `str.splitlines` (and many JSONL readers) end a line there:
    # escaped, every record stays on one line for any reader, and decodes to the same text.
    return line.translate(_LINE_BREAKS_INSIDE_JSON) + "\n"


def render_pubtator_document(
    document: PubTatorDocument, labels_of_sentences: Sequence[Mapping[str, Sequence[str]]], merge: str
) -> str:
    """The passage lines verbatim, then one predicted annotation line per entity, then a blank line."""
    sentences = document.sentences
    assert len(sentences) == len(labels_of_sentences), "one label mapping per sentence"
    lines = [f"{document.pmid}|{passage.key}|{passage.text}" for passage in document.passages]
    for sentence, labels_by_task in zip(sentences, labels_of_sentences):
        for entity in sentence_entities(sentence, labels_by_task, merge):
            # A TAB inside a mention would add a column; the offsets still say exactly where the mention is.
            mention_text = entity["text"].replace("\t", " ")
            lines.append(f"{document.pmid}\t{entity['start']}\t{entity['end']}\t{mention_text}\t{entity['type']}\t"
                         f"{PUBTATOR_SOURCE_PREFIX}{entity['task']}")
    return "\n".join(lines) + "\n\n"


@dataclass(frozen=True)
class InputFormat:
    """How one input format is read (lazily, unit by unit), split into sentences of words, and written back."""

    name: str
    unit_name: str
    read_units: Callable[[PathLike], Iterator[Any]]
    unit_sentences: Callable[[Any], list[list[str]]]
    render_unit: Callable[[Any, list[dict[str, list[str]]], str], str]


FORMATS: dict[str, InputFormat] = {
    "conll": InputFormat(
        "conll", "sentences", iter_conll_sentences, lambda sentence: [sentence.tokens],
        lambda sentence, labels, merge: render_conll_sentence(sentence, labels[0], merge),
    ),
    "text": InputFormat(
        "text", "sentences", iter_text_sentences, lambda sentence: [sentence.words],
        lambda sentence, labels, merge: render_text_sentence(sentence, labels[0], merge),
    ),
    "pubtator": InputFormat(
        "pubtator", "documents", iter_pubtator_documents,
        lambda document: [sentence.words for sentence in document.sentences], render_pubtator_document,
    ),
}


def detect_format(path: PathLike, requested: str | None = None) -> str:
    """The input format: `requested` when given, else from the file name (see `FORMAT_BY_SUFFIX`)."""
    if requested is not None:
        if requested not in INPUT_FORMATS:
            raise PredictionInputError(f"--format: expected one of {list(INPUT_FORMATS)}, got {requested!r}")
        return requested
    name = Path(path).name.lower()
    if name.endswith(".pubtator.txt"):
        return "pubtator"
    suffix = Path(name).suffix
    if suffix in FORMAT_BY_SUFFIX:
        return FORMAT_BY_SUFFIX[suffix]
    raise PredictionInputError(
        f"{path}: expected a name ending in {', '.join(FORMAT_BY_SUFFIX)} or .pubtator.txt, or --format "
        f"{'|'.join(INPUT_FORMATS)}, got {suffix or 'no extension'!r}"
    )


def tag_units(
    model, tokenizer, units: Sequence[Any], input_format: InputFormat, tasks: Sequence[str], settings: WindowSettings,
    merge: str, accelerator=None,
) -> str:
    """Tags a chunk of units (all their sentences in one call) and renders them in the output format."""
    sentences_of_units = [input_format.unit_sentences(unit) for unit in units]
    all_sentences = [words for sentences in sentences_of_units for words in sentences]
    labels_by_task = tag_sentences(
        model, tokenizer, all_sentences, tasks, batch_size=settings.batch_size, max_length=settings.max_length,
        overlap=settings.overlap, accelerator=accelerator,
    )
    per_sentence = labels_per_sentence(labels_by_task)
    rendered, first = [], 0
    for unit, sentences in zip(units, sentences_of_units):
        rendered.append(input_format.render_unit(unit, per_sentence[first : first + len(sentences)], merge))
        first += len(sentences)
    return "".join(rendered)


# ---------------------------------------------------------------------------------------------------------------------
# Streaming with resume


def _chunks(units: Iterable[Unit], size: int) -> Iterator[list[Unit]]:
    iterator = iter(units)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


class ResumableOutput:
    """`OUT.partial` plus `OUT.progress.json` (units done, bytes of `OUT.partial` holding them, run signature).

    The progress file is replaced atomically after the chunk's bytes are flushed to disk, so it never claims more
    than the partial file holds; bytes written after it (a run killed mid-chunk) are cut off on resume.
    Only the writing process (`enabled`) touches files; every process reads the progress to skip the same units.
    """

    def __init__(self, output_path: Path, signature: dict[str, Any], resume: bool, enabled: bool = True) -> None:
        self.output_path = output_path
        self.partial_path = output_path.with_name(output_path.name + PARTIAL_SUFFIX)
        self.progress_path = output_path.with_name(output_path.name + PROGRESS_SUFFIX)
        self.signature = signature
        self.enabled = enabled
        self.units_done, output_bytes = self._resume_point() if resume else (0, 0)
        self._handle = None
        if enabled:
            if not resume:  # a stale record must not describe the new partial output
                self.progress_path.unlink(missing_ok=True)
            output_path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.partial_path, "r+b" if output_bytes else "wb")
            self._handle.truncate(output_bytes)
            self._handle.seek(output_bytes)

    def _resume_point(self) -> tuple[int, int]:
        """(units done, bytes to keep) of the interrupted run, or (0, 0) when there is none to resume."""
        if not (self.progress_path.is_file() and self.partial_path.is_file()):
            logger.info("--resume: no interrupted run at %s; starting from the beginning", self.partial_path)
            return 0, 0
        try:
            progress = json.loads(self.progress_path.read_text(encoding="utf-8"))
            units_done, output_bytes = progress["units_done"], progress["output_bytes"]
            signature = progress["signature"]
        except (ValueError, KeyError, TypeError) as error:
            raise PredictionInputError(
                f"{self.progress_path}: expected the progress record of an interrupted run, got unreadable JSON "
                f"({error}); run without --resume to start over"
            ) from None
        differing = sorted(key for key in {**signature, **self.signature}
                           if signature.get(key) != self.signature.get(key))
        if differing:
            raise PredictionInputError(
                f"--resume: expected the same input, model and settings as the interrupted run recorded in "
                f"{self.progress_path}, got different {differing}; run without --resume to start over"
            )
        if self.partial_path.stat().st_size < output_bytes:
            raise PredictionInputError(
                f"--resume: expected {self.partial_path} to hold the {output_bytes} bytes its progress record "
                f"claims, got {self.partial_path.stat().st_size}; run without --resume to start over"
            )
        logger.info("Resuming after %d unit(s) already in %s", units_done, self.partial_path)
        return units_done, output_bytes

    def append(self, text: str, units: int) -> None:
        """Writes the output of the next `units` units and records them as done."""
        self.units_done += units
        if not self.enabled:
            return
        self._handle.write(text.encode("utf-8"))
        self._handle.flush()
        os.fsync(self._handle.fileno())
        progress = {"units_done": self.units_done, "output_bytes": self._handle.tell(), "signature": self.signature}
        staging = self.progress_path.with_name(self.progress_path.name + ".tmp")
        staging.write_text(json.dumps(progress, indent=2), encoding="utf-8")
        os.replace(staging, self.progress_path)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def finish(self) -> None:
        """Moves the complete output into place and forgets the progress."""
        self.close()
        if self.enabled:
            os.replace(self.partial_path, self.output_path)
            self.progress_path.unlink(missing_ok=True)


@dataclass
class PredictionOptions:
    """What `predict_file` does besides which model, input and output (the flags of `predict.py`)."""

    tasks: list[str] | None = None
    input_format: str | None = None
    merge: str = "longest"
    batch_size: int | None = None
    max_length: int | None = None
    overlap: int | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    resume: bool = False
    cpu: bool = False
    show_progress: bool = True
    stop_after_chunks: int | None = None
    """Return (as if killed) after this many chunks, leaving the partial output and its progress: for tests."""


@dataclass
class PredictionSummary:
    """What `predict_file` did."""

    output_path: Path
    input_format: str
    tasks: list[str]
    total_units: int
    units_done: int
    complete: bool


def _check_paths(input_path: Path, output_path: Path) -> None:
    if not input_path.is_file():
        got = "a folder" if input_path.is_dir() else "no such file"
        raise FileNotFoundError(f"{input_path}: expected an input file, got {got}")
    if output_path.resolve() == input_path.resolve():
        raise PredictionInputError(f"--output: expected a file other than the input, got {output_path}")


def _run_signature(input_path: Path, model_dir: Path, format_name: str, tasks: list[str], merge: str,
                   settings: WindowSettings) -> dict[str, Any]:
    """What must not change between an interrupted run and its resumption."""
    stat = input_path.stat()
    return {
        "input": str(input_path.resolve()), "input_bytes": stat.st_size, "input_mtime_ns": stat.st_mtime_ns,
        "model": str(model_dir.resolve()), "format": format_name, "tasks": tasks, "merge": merge,
        "max_length": settings.max_length, "overlap": settings.overlap,
    }


def predict_file(
    model_dir: PathLike, input_path: PathLike, output_path: PathLike, options: PredictionOptions | None = None
) -> PredictionSummary:
    """Tags a CoNLL, text or PubTator file with a model folder and writes the predictions (see the module docstring).

    Raises:
        FileNotFoundError, CorpusFormatError, PredictionInputError: naming the file (and line) or the option, for a
            missing file, a malformed input, an unknown task or bad settings; before the model is loaded.
    """
    options = options or PredictionOptions()
    model_dir, input_path, output_path = Path(model_dir), Path(input_path), Path(output_path)
    input_format = FORMATS[detect_format(input_path, options.input_format)]
    check_merge_policy(options.merge)
    if options.chunk_size < 1:
        raise PredictionInputError(f"--chunk_size: expected a positive number of units, got {options.chunk_size}")
    _check_paths(input_path, output_path)
    config = load_model_config(model_dir)
    tasks = resolve_tasks(config, options.tasks)
    settings = window_settings(model_dir, options.max_length, options.overlap, options.batch_size)
    total_units = sum(1 for _ in input_format.read_units(input_path))  # checks all of the input, holding none of it
    # torch and friends are imported only now, so that bad arguments and inputs are reported in a moment; every
    # check that can fail comes before the model loads (and prints its progress bar).
    from accelerate import Accelerator

    from modeling_hstl import HSTLModel

    tokenizer = load_tokenizer_of(model_dir)
    check_window_settings(tokenizer, settings)
    accelerator = Accelerator(cpu=options.cpu)
    signature = _run_signature(input_path, model_dir, input_format.name, tasks, options.merge, settings)
    output = ResumableOutput(output_path, signature, options.resume, enabled=accelerator.is_main_process)
    accelerator.wait_for_everyone()  # every process has read the progress before the writer changes it
    summary = PredictionSummary(output_path, input_format.name, tasks, total_units, output.units_done, complete=False)
    try:
        model = HSTLModel.from_pretrained(model_dir, config=config).eval()
        model = accelerator.prepare_model(model, evaluation_mode=True)
        tagger = _ChunkTagger(model, tokenizer, input_format, tasks, settings, options.merge, accelerator)
        summary.complete = _tag_in_chunks(tagger, input_path, output, total_units, options,
                                          show_bar=accelerator.is_local_main_process)
    finally:
        output.close()
    if summary.complete:
        output.finish()
    summary.units_done = output.units_done
    return summary


@dataclass(frozen=True)
class _ChunkTagger:
    """Everything `tag_units` needs besides the units."""

    model: Any
    tokenizer: Any
    input_format: InputFormat
    tasks: list[str]
    settings: WindowSettings
    merge: str
    accelerator: Any

    def __call__(self, units: Sequence[Any]) -> str:
        return tag_units(self.model, self.tokenizer, units, self.input_format, self.tasks, self.settings, self.merge,
                         self.accelerator)


def _tag_in_chunks(tagger: _ChunkTagger, input_path: Path, output: ResumableOutput, total_units: int,
                   options: PredictionOptions, show_bar: bool) -> bool:
    """Tags and writes the units not done yet, chunk by chunk; False when stopped by `options.stop_after_chunks`."""
    from tqdm.auto import tqdm

    units = itertools.islice(tagger.input_format.read_units(input_path), output.units_done, None)
    show_bar = show_bar and options.show_progress and total_units > options.chunk_size
    with tqdm(total=total_units, initial=output.units_done, unit=tagger.input_format.unit_name[:-1], desc="Tagging",
              disable=not show_bar) as progress_bar:
        for chunks_done, chunk in enumerate(_chunks(units, options.chunk_size)):
            if options.stop_after_chunks is not None and chunks_done >= options.stop_after_chunks:
                return False
            output.append(tagger(chunk), len(chunk))
            progress_bar.update(len(chunk))
    return True
