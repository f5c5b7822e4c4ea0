"""CoNLL (token-per-line) files: the one reader (streaming) and writer of the package, used by training data loading,
`eval` scoring and prediction, and the writer of predicted CoNLL.

A corpus file holds one token per line, `token<TAB>label` (any extra middle columns are ignored, and runs of spaces
separate the columns on a line without a TAB), IOB2 labels, and a blank line after every sentence. A `-DOCSTART-`
line (followed by a blank line) marks the start of a document; it is not a sentence. Files that differ from this
only in ways that carry no information (CRLF line ends, a UTF-8 byte order mark, trailing spaces or tabs, runs of
blank lines, no final newline) read exactly like clean ones; anything else that is malformed raises
`CorpusFormatError` naming the file and line. Blank means `hstl.formats.common.is_separator`: empty or ASCII spaces and
TABs only; a token made of other whitespace (U+00A0, U+3000, ...) is a token.

`write_conll` writes the canonical form, so `write_conll(read_conll(path))` reproduces a canonical file byte for byte.

Stdlib only (plus `labels_hstl` for the one definition of an IOB2 label).
"""

from __future__ import annotations

import codecs
import io
import os
import re
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence, TextIO

from labels_hstl import OUTSIDE_LABEL, split_label

from .common import SEPARATOR_WHITESPACE, CorpusFormatError, LineCounter, PathLike, strip_line

DOCSTART = "-DOCSTART-"
IOB_EXPECTATION = (
    "expected an IOB2 label: 'O', 'B-<type>' or 'I-<type>' "
    "(IOB/IOB2 only: IOBES/BILOU tags such as 'E-X', 'S-X', 'L-X' or 'U-X' are not supported)"
)
_SPACE_RUN = re.compile(" +")


@dataclass
class Sentence:
    """One sentence of a corpus.

    Attributes:
        tokens: the words, in order; never empty when read from a file.
        labels: one IOB2 label per token, or None for unlabelled text.
        line: 1-based line of the first token in its file (for a Hugging Face dataset: the 1-based row number), so
            that errors found later can still point at the source.
        starts_document: a `-DOCSTART-` line stood before this sentence.
    """

    tokens: list[str]
    labels: list[str] | None
    line: int
    starts_document: bool = False

    def __post_init__(self) -> None:
        if self.labels is not None and len(self.labels) != len(self.tokens):
            raise ValueError(
                f"Sentence at line {self.line}: expected one label per token ({len(self.tokens)}), "
                f"got {len(self.labels)} labels"
            )


def is_blank_token(token: str) -> bool:
    """Whether a token column holds nothing: empty or ASCII spaces and TABs only (other whitespace is a token)."""
    return not token.strip(SEPARATOR_WHITESPACE)


# ---------------------------------------------------------------------------------------------------------------------
# Reading


def parse_conll_lines(numbered_lines: Iterable[tuple[int, str]], path: PathLike, labelled: bool) -> Iterator[Sentence]:
    """Sentences from `(line number, line)` pairs of a decoded file (line ends may be kept); see `read_conll`.

    One flat loop on purpose: it runs once per token of every corpus, and a helper call per line would double the
    time it takes to read a large corpus.
    """
    tokens: list[str] = []
    labels: list[str] = []
    first_line, starts_document = 0, False
    # A corpus has few distinct labels but many lines: each label is checked once, and every later occurrence
    # shares the first one's string object, which saves memory on large corpora.
    known_labels = {OUTSIDE_LABEL: OUTSIDE_LABEL}
    for line_number, raw_line in numbered_lines:
        line = strip_line(raw_line)
        if not line.lstrip(SEPARATOR_WHITESPACE):
            if tokens:
                yield Sentence(tokens, labels if labelled else None, first_line, starts_document)
                tokens, labels, starts_document = [], [], False
            continue
        # TAB-separated columns, or runs of spaces on a line without a TAB.
        columns = line.split("\t") if "\t" in line else _SPACE_RUN.split(line)
        token = columns[0]
        if not token.strip(SEPARATOR_WHITESPACE):
            raise CorpusFormatError(path, line_number, "expected a non-empty token in the first column", repr(line))
        if token == DOCSTART:
            if tokens:
                raise CorpusFormatError(
                    path, line_number, f"expected {DOCSTART} only between sentences (after a blank line)",
                    f"it inside the sentence that starts at line {first_line}",
                )
            starts_document = True
            continue
        if not tokens:
            first_line = line_number
        tokens.append(token)
        if labelled:
            if len(columns) < 2:
                raise CorpusFormatError(
                    path, line_number, "expected a token and a label separated by a TAB", f"one column {line!r}"
                )
            label = known_labels.get(columns[-1])
            if label is None:
                label = columns[-1]
                check_iob_label(label, path, line_number)
                known_labels[label] = label
            labels.append(label)
    if tokens:
        yield Sentence(tokens, labels if labelled else None, first_line, starts_document)


def check_iob_label(label: str, path: PathLike, line_number: int) -> None:
    """Raises `CorpusFormatError` naming the file and line unless `label` is IOB2."""
    try:
        split_label(label)
    except ValueError:
        raise CorpusFormatError(path, line_number, IOB_EXPECTATION, repr(label)) from None


def iter_conll(path: PathLike, *, labelled: bool = True) -> Iterator[Sentence]:
    """The sentences of a token-per-line corpus file, read lazily (memory: one sentence); see `read_conll`.

    Raises:
        CorpusFormatError: as `read_conll`, once the reading reaches the problem.
    """
    lines = LineCounter(path)
    found_sentence = False
    for sentence in parse_conll_lines(lines, path, labelled):
        found_sentence = True
        yield sentence
    if not found_sentence:
        # Point at the end of the file: that is where the reader gave up looking for a sentence.
        expected = "expected at least one sentence (token<TAB>label lines)" if labelled else \
            "expected at least one sentence (token lines)"
        raise lines.nothing_found(expected, "no token line in {lines} line(s)")


def read_conll(path: PathLike, *, labelled: bool = True) -> list[Sentence]:
    """Reads a token-per-line corpus file.

    Each non-blank line is one token: the first column is the token and, when `labelled`, the last column is its
    IOB2 label (middle columns, such as CoNLL-2003's POS and chunk tags, are ignored). Columns are separated by TABs,
    or by runs of spaces on a line that has no TAB. Blank lines (empty, or ASCII spaces and TABs only) end sentences;
    `-DOCSTART-` lines are document markers recorded as `Sentence.starts_document` on the next sentence. Lines end at
    "\\n" only, so characters such as U+2028 or U+0085 stay inside their tokens. Labels are kept exactly as read: an
    `I-X` after `O` or after another type is valid input (conlleval starts a new mention there), not an error to
    repair.

    Args:
        path: the file.
        labelled: whether lines carry a label column. When False only the first column is read and every
            `Sentence.labels` is None.

    Returns:
        The sentences in file order; never empty.

    Raises:
        CorpusFormatError: naming the file and line, when the file is not UTF-8, holds no sentence, or has a line
            with an empty token, without a label column (`labelled=True`), with a label that is not IOB2, or with a
            `-DOCSTART-` inside a sentence.
    """
    return list(iter_conll(path, labelled=labelled))


# ---------------------------------------------------------------------------------------------------------------------
# Writing


_BOM_CHARACTER = codecs.BOM_UTF8.decode("utf-8")
# Characters that would split a line or a column when read back; an unlabelled token also loses any space, since
# a line without a TAB is split on spaces.
_BREAKS_LABELLED_TOKEN = re.compile("[\t\n\r]")
_BREAKS_UNLABELLED_TOKEN = re.compile("[\t\n\r ]")
# The same tests run on a sentence's tokens joined by "\n" (MULTILINE: ^ and $ then sit at token boundaries), plus
# empty or ASCII-space-only tokens and a leading byte order mark; a match sends the sentence to the per-token check.
_SUSPICIOUS_LABELLED = re.compile("[\t\r]|^ *$|^\ufeff", re.MULTILINE)
_SUSPICIOUS_UNLABELLED = re.compile("[\t\r ]|^$|^\ufeff", re.MULTILINE)


def _check_writable_token(token: Any, labelled: bool, where: str) -> None:
    """Raises unless `read_conll` would give back exactly this token."""
    if not isinstance(token, str) or is_blank_token(token):
        raise ValueError(f"{where}: expected a non-empty string token, got {token!r}")
    breaking = _BREAKS_LABELLED_TOKEN if labelled else _BREAKS_UNLABELLED_TOKEN
    if token == DOCSTART or token[0] == _BOM_CHARACTER or breaking.search(token):
        spaces = "" if labelled else ", spaces (an unlabelled line is split on them)"
        raise ValueError(
            f"{where}: expected a token without TAB, line breaks{spaces} or a leading byte order mark, "
            f"other than {DOCSTART}, got {token!r}"
        )


def _check_writable_label(label: Any, where: str) -> None:
    """Raises unless `label` is IOB2 and reads back unchanged as the last column of a line."""
    if not isinstance(label, str):
        raise ValueError(f"{where}: {IOB_EXPECTATION}, got {label!r}")
    try:
        split_label(label)
    except ValueError:
        raise ValueError(f"{where}: {IOB_EXPECTATION}, got {label!r}") from None
    if _BREAKS_LABELLED_TOKEN.search(label) or strip_line(label) != label:
        raise ValueError(f"{where}: expected a label without TAB, line breaks or trailing whitespace, got {label!r}")


def _sentence_block(sentence: Sentence, index: int, known_labels: set[str]) -> str:
    """A sentence in canonical form: its `-DOCSTART-` marker if any, one line per token, then a blank line.

    `known_labels` holds labels already checked; it grows as new ones pass (a corpus has few distinct labels).
    """
    where = f"sentences[{index}] (line {sentence.line})"
    tokens, labels = sentence.tokens, sentence.labels
    if not tokens:
        raise ValueError(f"{where}: expected at least one token, got none")
    # Checking the joined tokens at once is several times faster than a check per token; only a sentence that
    # looks wrong is checked token by token, to name the culprit (or to clear a false alarm).
    try:
        joined_tokens = "\n".join(tokens)
        suspicious = _SUSPICIOUS_LABELLED if labels is not None else _SUSPICIOUS_UNLABELLED
        looks_wrong = (
            joined_tokens.count("\n") != len(tokens) - 1 or DOCSTART in tokens or suspicious.search(joined_tokens)
        )
    except TypeError:  # a token that is not a string
        looks_wrong = True
    if looks_wrong:
        for position, token in enumerate(tokens):
            _check_writable_token(token, labels is not None, f"{where} token {position}")
    if labels is None:
        body = joined_tokens
    else:
        for label in set(labels) - known_labels:
            _check_writable_label(label, f"{where} label {label!r}")
            known_labels.add(label)
        body = "\n".join(map("\t".join, zip(tokens, labels)))
    marker = f"{DOCSTART}\t{OUTSIDE_LABEL}\n\n" if sentence.starts_document else ""
    return f"{marker}{body}\n\n"


def write_conll(path_or_textio: PathLike | TextIO, sentences: Iterable[Sentence]) -> None:
    """Writes sentences in the canonical form that `read_conll` reads back unchanged.

    Canonical form: UTF-8 without byte order mark, `"\\n"` line ends, `token<TAB>label` lines (just `token` for a
    sentence whose labels are None), a blank line after every sentence (so the file ends with `"\\n\\n"`), and
    `-DOCSTART-<TAB>O` plus a blank line before a sentence with `starts_document`.

    Args:
        path_or_textio: a file path (created or overwritten) or an open text stream.
        sentences: what to write.

    Raises:
        ValueError: for a sentence that the reader would not give back as it is: no tokens, an empty token, a token
            holding a TAB or a line break, a label that is not IOB2.
    """
    if isinstance(path_or_textio, (str, os.PathLike)):
        # newline="\n": no "\r\n" translation on Windows, so the bytes are the same everywhere.
        with open(path_or_textio, "w", encoding="utf-8", newline="\n") as handle:
            _write_blocks(handle, sentences)
    else:
        _write_blocks(path_or_textio, sentences)


def _write_blocks(handle: TextIO, sentences: Iterable[Sentence]) -> None:
    known_labels: set[str] = set()
    for index, sentence in enumerate(sentences):
        handle.write(_sentence_block(sentence, index, known_labels))


# ---------------------------------------------------------------------------------------------------------------------
# Predicted CoNLL


def render_conll_sentence(sentence: Sentence, labels_by_task: Mapping[str, Sequence[str]], merge: str,
                          scores_by_task: Mapping[str, Sequence[Mapping[str, float]]] | None = None,
                          entity_type_of: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """A tagged sentence in CoNLL form: its document marker if any, `token<TAB>label(s)` lines, a blank line.

    With merge "none" and several heads, one label column per head (in the mapping's order); otherwise one column,
    the heads' mentions merged (`hstl.inference.merging`; "confidence" needs the heads' word marginals
    `scores_by_task`). CoNLL output carries labels only, no confidences. Labels name the shared entity types of
    `entity_type_of` (`HSTLConfig.entity_types`).
    """
    from entity_types_hstl import to_entity_labels

    from ..inference.merging import merge_mentions, mentions_to_labels

    entity_type_of = entity_type_of or {}
    columns = [to_entity_labels(labels, entity_type_of.get(task, {})) for task, labels in labels_by_task.items()]
    if merge == "none" and len(columns) > 1:
        marker = DOCSTART + f"\t{OUTSIDE_LABEL}" * len(columns) + "\n\n" if sentence.starts_document else ""
        lines = ["\t".join((token, *labels)) for token, labels in zip(sentence.tokens, zip(*columns))]
        return marker + "\n".join(lines) + "\n\n"
    if merge == "none":
        labels = list(columns[0])
    else:
        mentions = merge_mentions(labels_by_task, merge, scores_by_task, entity_type_of=entity_type_of)
        labels = mentions_to_labels(mentions, len(sentence.tokens))
    block = io.StringIO()
    write_conll(block, [Sentence(sentence.tokens, labels, sentence.line, sentence.starts_document)])
    return block.getvalue()
