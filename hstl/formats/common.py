"""What every reader of `hstl.formats` shares: the error of a malformed file, lazy UTF-8 line reading, and the one
rule for lines that separate sentences (CoNLL), paragraphs (text) and documents (PubTator).

The rule: a line separates when it is empty or holds only ASCII spaces and TABs (after its line end, "\\n" or
"\\r\\n"). Any other character, however blank it looks (U+00A0, U+2009, U+3000, a form feed), is content: in a CoNLL
token column it is a token and gets a label.

Stdlib only.
"""

from __future__ import annotations

import codecs
import os
from dataclasses import dataclass
from typing import Any, Iterator, Union

from ..errors import CorpusFormatError  # noqa: F401 (defined with every user error; the readers raise it)

PathLike = Union[str, "os.PathLike[str]"]
"""A file or folder path as the public functions of the package accept it."""

SEPARATOR_WHITESPACE = " \t"
"""The only characters a separating line may hold; also what may trail a line without meaning anything."""
_LINE_END = "\r\n"


def strip_line(line: str) -> str:
    """A line without its line end and without trailing ASCII spaces and TABs (noise that carries no information)."""
    return line.rstrip(_LINE_END).rstrip(SEPARATOR_WHITESPACE + "\r")


def is_separator(line: str) -> bool:
    """Whether a line (with or without its line end) separates sentences, paragraphs or documents."""
    return not strip_line(line).lstrip(SEPARATOR_WHITESPACE)


@dataclass(frozen=True)
class FileRange:
    """Bytes `[start, end)` of a file, starting at a line start: what one process of a sharded run reads
    (`hstl.inference.sharding`). A line reader given one reads only these bytes and numbers lines from `first_line`;
    the text reader also starts counting characters at `first_character` and paragraphs at `first_paragraph`, so that
    every offset and id is the one reading the whole file gives. Errors name the file: `str()` and `os.fspath()`
    give its path."""

    path: str
    start: int
    end: int
    first_line: int = 1
    first_character: int = 0
    first_paragraph: int = 1

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path


def _raw_lines(path: PathLike) -> Iterator[bytes]:
    """The lines of a file as bytes, or of a `FileRange` only."""
    with open(path, "rb") as handle:
        if not isinstance(path, FileRange):
            yield from handle
            return
        handle.seek(path.start)
        remaining = path.end - path.start
        for raw_line in handle:
            if remaining <= 0:
                return
            remaining -= len(raw_line)
            yield raw_line


def decoded_lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """`(1-based line number, line with its "\\n")` of a UTF-8 file (or `FileRange`), read lazily; a leading byte
    order mark is dropped. Lines end at "\\n" only: U+2028, U+0085 or a lone "\\r" stay inside their line.

    Raises:
        CorpusFormatError: naming the file and line, for bytes that are not UTF-8.
    """
    first_line = path.first_line if isinstance(path, FileRange) else 1
    for line_number, raw_line in enumerate(_raw_lines(path), start=first_line):
        if line_number == 1 and raw_line.startswith(codecs.BOM_UTF8):
            raw_line = raw_line[len(codecs.BOM_UTF8):]
        try:
            line = raw_line.decode("utf-8")
        except UnicodeDecodeError as error:
            bad_bytes = raw_line[error.start : error.end].hex(" ")
            got = f"byte(s) {bad_bytes} at byte {error.start + 1} of the line"
            raise CorpusFormatError(path, line_number, "expected UTF-8 text", got) from None
        yield line_number, line


class LineCounter:
    """Wraps `decoded_lines` to know, once it is exhausted, how many lines the file has, for the error of a file
    without any unit: it points at the last line, where the reader gave up looking."""

    def __init__(self, path: PathLike) -> None:
        self.path = path
        self.lines_read = 0

    def __iter__(self) -> Iterator[tuple[int, str]]:
        for line_number, line in decoded_lines(self.path):
            self.lines_read = line_number
            yield line_number, line

    def nothing_found(self, expected: str, got_without_units: str) -> CorpusFormatError:
        """The error for a file that held no unit: `got_without_units` is formatted with `lines` (line count)."""
        got = "an empty file" if self.lines_read == 0 else got_without_units.format(lines=self.lines_read)
        return CorpusFormatError(self.path, max(self.lines_read, 1), expected, got)


SCORE_DECIMALS = 4
"""Mention confidences are written rounded to this many decimals (JSONL `score`, BioC infon `score`, PubTator)."""


def rounded_score(score: float | None) -> float | None:
    """A mention's confidence as files hold it: rounded to `SCORE_DECIMALS` (None stays None)."""
    return None if score is None else round(score, SCORE_DECIMALS)
