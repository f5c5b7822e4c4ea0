"""PubTator files: the lazy document reader and the writer that replaces a document's annotations with predicted ones.

Documents are passage lines `PMID|t|title`, `PMID|a|abstract` (any passage key is accepted; passage offsets follow
PubTator: each starts one character after the end of the previous), then annotation lines, with a separator line
(`hstl.formats.common.is_separator`) between documents. The output repeats the passage lines verbatim and REPLACES
the input's annotation (and relation) lines with predicted ones,
`PMID<TAB>start<TAB>end<TAB>mention<TAB>type<TAB>concept id<TAB>HSTL:task|score=0.9312`, so a file is never a mix of
gold and predicted annotations; score against the gold file instead. The sixth column is PubTator's concept id:
always `-`, since HSTL links no concept (tools that read six columns see a well-formed file); the seventh, an HSTL
addition, names the head that found the mention and, after `|score=`, the mention's confidence
(`mentions_hstl.mention_confidence`, 4 decimals). The confidence shares the seventh column rather than adding an
eighth because readers accept seven columns but not eight: the `bioc` package's PubTator reader
(`bioc.pubtator.loads_ann`) parses 6 or 7 tab-separated fields and raises on 8; with 7 it keeps the seventh as is
(its composite-mention branch needs a `|` in the sixth column too, and `-` has none).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

from .common import SCORE_DECIMALS, CorpusFormatError, LineCounter, PathLike, is_separator
from .text import TextSentence, sentence_entities, text_sentences

PUBTATOR_SOURCE_PREFIX = "HSTL:"
"""Seventh column of a predicted PubTator annotation: `HSTL:<task>` says which head found it (then
`|score=<confidence>`, `PUBTATOR_SCORE_PREFIX`)."""
PUBTATOR_SCORE_PREFIX = "|score="
"""Between the head and the mention's confidence in the seventh column: `HSTL:BC2GM|score=0.5500`."""
NO_CONCEPT_ID = "-"
"""Sixth column (concept id) of a predicted PubTator annotation: HSTL links no concept."""
_PASSAGE_LINE = re.compile(r"(?P<pmid>[^|\t]+)\|(?P<key>[^|\t]+)\|(?P<text>.*)", re.DOTALL)


@dataclass
class PubTatorPassage:
    """One `PMID|key|text` line; `offset` is where its text starts in the document's character frame."""

    key: str
    text: str
    offset: int


@dataclass
class PubTatorDocument:
    """A PubTator document: its passages, its annotation lines as they came, and its sentences."""

    pmid: str
    passages: list[PubTatorPassage]
    line: int
    annotation_lines: list[tuple[int, str]] = field(default_factory=list)
    """`(file line number, line)` of each annotation (or relation) line, unparsed: prediction replaces them, and
    `hstl.formats.gold_text.read_pubtator_gold` reads the mentions among them."""

    @functools.cached_property
    def sentences(self) -> list[TextSentence]:
        """Sentences of every passage, offsets in the document's frame (a sentence never spans two passages)."""
        return [sentence for passage in self.passages for sentence in text_sentences(passage.text, passage.offset)]


def _pubtator_error(path: PathLike, line_number: int, expected: str, line: str) -> CorpusFormatError:
    shown = line if len(line) <= 80 else line[:77] + "..."
    return CorpusFormatError(path, line_number, expected, repr(shown))


class _DocumentBuilder:
    """The document being read; `add_*` raise `CorpusFormatError` for a line that does not fit it."""

    def __init__(self, path: PathLike, pmid: str, line_number: int) -> None:
        self.path = path
        self.document = PubTatorDocument(pmid, [], line_number)
        self.next_offset, self.seen_annotation = 0, False

    def add_passage(self, passage: re.Match, line_number: int, line: str) -> None:
        if self.seen_annotation:
            raise _pubtator_error(self.path, line_number,
                                  f"expected the passage lines of document {self.document.pmid} before its annotations",
                                  line)
        self.document.passages.append(PubTatorPassage(passage["key"], passage["text"], self.next_offset))
        self.next_offset += len(passage["text"]) + 1

    def add_annotation(self, line_number: int, line: str) -> None:
        if line.split("\t", 1)[0] != self.document.pmid:
            raise _pubtator_error(self.path, line_number, f"expected an annotation line of document "
                                  f"{self.document.pmid} (or a blank line)", line)
        self.seen_annotation = True
        self.document.annotation_lines.append((line_number, line))  # not written back: predictions replace them


def iter_pubtator_documents(path: PathLike) -> Iterator[PubTatorDocument]:
    """The documents of a PubTator file, read lazily.

    A document is its passage lines (`PMID|t|...`, `PMID|a|...`) and then its annotation lines (`PMID<TAB>...`);
    documents are separated by blank lines (a passage line with a new PMID also starts a new document).

    Raises:
        CorpusFormatError: naming the file and line, for a line that is none of these, an annotation line before any
            passage or with another document's PMID, bytes that are not UTF-8, or a file without documents.
    """
    builder: _DocumentBuilder | None = None
    found_document = False
    lines = LineCounter(path)
    for line_number, raw_line in lines:
        line = raw_line.rstrip("\n").removesuffix("\r")
        passage = _PASSAGE_LINE.fullmatch(line)
        if is_separator(line) or (passage is not None and builder is not None and
                                  passage["pmid"] != builder.document.pmid):
            if builder is not None:
                found_document = True
                yield builder.document
            builder = None
        if is_separator(line):
            continue
        if passage is not None:
            builder = builder or _DocumentBuilder(path, passage["pmid"], line_number)
            builder.add_passage(passage, line_number, line)
        elif "\t" in line and builder is not None:
            builder.add_annotation(line_number, line)
        elif "\t" in line:
            raise _pubtator_error(path, line_number, "expected a passage line 'PMID|t|text' before annotations", line)
        else:
            raise _pubtator_error(path, line_number, "expected a passage line 'PMID|t|text', an annotation line "
                                  "'PMID<TAB>...' or a blank line", line)
    if builder is not None:
        found_document = True
        yield builder.document
    if not found_document:
        raise lines.nothing_found("expected at least one document ('PMID|t|title' lines)",
                                  "no passage line in {lines} line(s)")


def render_pubtator_document(
    document: PubTatorDocument, labels_of_sentences: Sequence[Mapping[str, Sequence[str]]], merge: str,
    scores_of_sentences: Sequence[Mapping[str, Sequence[Mapping[str, float]]]] | None = None,
    entity_type_of: Mapping[str, Mapping[str, str]] | None = None,
) -> str:
    """The passage lines verbatim, then one predicted annotation line per entity, then a blank line. With the heads'
    word marginals per sentence (`scores_of_sentences`), each line carries its mention's confidence."""
    sentences = document.sentences
    assert len(sentences) == len(labels_of_sentences), "one label mapping per sentence"
    scores_of_sentences = scores_of_sentences or [None] * len(sentences)
    lines = [f"{document.pmid}|{passage.key}|{passage.text}" for passage in document.passages]
    for sentence, labels_by_task, scores_by_task in zip(sentences, labels_of_sentences, scores_of_sentences):
        for entity in sentence_entities(sentence, labels_by_task, merge, scores_by_task,
                                        entity_type_of=entity_type_of):
            # A TAB inside a mention would add a column; the offsets still say exactly where the mention is.
            mention_text = entity["text"].replace("\t", " ")
            source = f"{PUBTATOR_SOURCE_PREFIX}{entity['task']}"
            if entity["score"] is not None:
                source += f"{PUBTATOR_SCORE_PREFIX}{entity['score']:.{SCORE_DECIMALS}f}"
            lines.append(f"{document.pmid}\t{entity['start']}\t{entity['end']}\t{mention_text}\t{entity['type']}\t"
                         f"{NO_CONCEPT_ID}\t{source}")
    return "\n".join(lines) + "\n\n"
