"""BioC XML and BioC JSON in and out, through the `bioc` package (the format of PubTator Central, BioCreative and
most BioNLP text-mining pipelines).

Reading: `iter_bioc_documents(path)` yields one `BioCUnit` per document: the `bioc.BioCDocument` as read, and the
sentences of its passages with words and character offsets in the document's frame (a passage's text starts at its
`offset`; a sentence never spans two passages). A passage without text but with `<sentence>` elements is read
sentence by sentence at their own offsets. BioC XML is read lazily, one document at a time (`BioCXMLDocumentReader`);
a BioC JSON file (or range) is one JSON object, so it is read whole.

A sharded run reads BioC by byte ranges (`hstl.inference.sharding`), each process parsing only the collection's
opening (the bytes before the first document), its own range, and the closing (`</collection>`, or `]}` in JSON) when
the range does not end the file; error lines are the file's. In XML a range starts at a `<document` tag that follows a
`</document>` (`xml_document_cuts`), in JSON at an object of the top-level "documents" array
(`json_document_starts`).

Writing: the output repeats the collection (source, date, key, infons), every document (id, infons), every passage
(infons, offset, text) and every sentence element verbatim, and REPLACES the input's annotations and relations with
predicted ones, as the PubTator writer does, so a file is never a mix of gold and predicted annotations. Each
predicted annotation carries `infons` `type` (the entity type), `identifier` (`-`: HSTL links no concept), `score`
(the mention's confidence, `mentions_hstl.mention_confidence`, written with 4 decimals) and `annotator` (`HSTL:<head>`), one `location` (offset, length) in the
document's frame and the mention's `text`. Documents are rendered one by one (`render_bioc_document`), between a
`bioc_header` and a `bioc_footer`, separated by `BIOC_SEPARATOR[fmt]`, so that output can be streamed and resumed.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import mmap
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import bioc
from bioc import biocjson, biocxml
from lxml import etree

from .common import SCORE_DECIMALS, CorpusFormatError, FileRange, PathLike
from .text import TextSentence, sentence_entities, text_sentences


BIOC_XML, BIOC_JSON = "bioc-xml", "bioc-json"
BIOC_FORMATS = (BIOC_XML, BIOC_JSON)
BIOC_SEPARATOR = {BIOC_XML: "", BIOC_JSON: ",\n"}
"""What goes between two rendered documents: a JSON array needs commas, an XML element list nothing."""
NO_IDENTIFIER = "-"
ANNOTATOR_PREFIX = "HSTL:"


@dataclass
class BioCUnit:
    """One BioC document as read, and (built on first use, so that a process skipping it pays nothing) the sentences
    HSTL tags in it."""

    document: bioc.BioCDocument

    @functools.cached_property
    def sentences(self) -> list[TextSentence]:
        sentences = []
        for passage in self.document.passages:
            if passage.text:
                sentences.extend(text_sentences(passage.text, passage.offset))
            else:
                for sentence in passage.sentences:
                    sentences.extend(text_sentences(sentence.text or "", sentence.offset))
        return sentences


def sniff_bioc(path: PathLike) -> str | None:
    """`BIOC_XML` or `BIOC_JSON` when the file starts like one (after white space and a byte order mark), else None."""
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<") and b"<collection" in head:
        return BIOC_XML
    if head.startswith(b"{") and b'"documents"' in head or head.startswith(b'{"source"'):
        return BIOC_JSON
    return None


def _read_json_collection(path: PathLike) -> bioc.BioCCollection:
    """A BioC JSON file, or a `FileRange` of one (`json_document_starts`): the range's documents in a collection
    built from the file's opening, its range and the closing `]}` (error lines are the file's)."""
    opening_lines, first_line = 0, 1
    try:
        if isinstance(path, FileRange):
            opening = _json_opening(path.path) if path.start else b""
            opening_lines, first_line = opening.count(b"\n"), path.first_line
            with open(path.path, "rb") as handle:
                handle.seek(path.start)
                data = handle.read(path.end - path.start)
            if path.end < Path(path.path).stat().st_size:  # a later range holds the array's end
                data = data.rstrip().removesuffix(b",") + b"]}"
            # The collection's fields may come after the documents, in another range: the documents only.
            collection = bioc.BioCCollection()
            for document in json.loads((opening + data).decode("utf-8-sig"))["documents"]:
                collection.add_document(biocjson.decoder.parse_doc(document))
            return collection
        with open(path, encoding="utf-8-sig") as handle:
            return biocjson.load(handle)
    except json.JSONDecodeError as error:
        line = error.lineno + first_line - 1 - opening_lines if error.lineno > opening_lines else error.lineno
        raise CorpusFormatError(path, line, "expected BioC JSON", f"invalid JSON ({error.msg})") from None
    except UnicodeDecodeError as error:
        raise CorpusFormatError(path, None, "expected UTF-8 text", f"a byte that is not UTF-8 ({error.reason})") from None
    except (KeyError, TypeError, ValueError) as error:
        raise CorpusFormatError(path, None, "expected a BioC JSON collection", f"a missing or bad field ({error})") \
            from None


def read_collection_info(path: PathLike, fmt: str) -> bioc.BioCCollection:
    """The collection's source, date, key and infons, with no documents."""
    if fmt == BIOC_JSON:
        collection = _read_json_collection(path)
    else:
        try:
            collection = biocxml.BioCXMLDocumentReader(str(path)).get_collection_info()
        except etree.XMLSyntaxError as error:
            raise CorpusFormatError(path, error.lineno, "expected BioC XML", f"invalid XML ({error.msg})") from None
    info = bioc.BioCCollection()
    info.source, info.date, info.key = collection.source or "", collection.date or "", collection.key or ""
    info.infons = dict(collection.infons)
    return info


# Markup inside which a `<document` is text, not a tag (skipped whole by the scans below), or a document start tag.
_SKIPPED = rb"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<\?.*?\?>"
_DOCUMENT_TAG = re.compile(_SKIPPED + rb"|(<document[\s/>])", re.DOTALL)
_DOCUMENT_CUT = re.compile(_SKIPPED + rb"|</document>\s*(<document[\s/>])", re.DOTALL)


def xml_document_cuts(path: PathLike) -> Iterator[tuple[int, int]]:
    """`(byte, line)` of every `<document` start tag of a BioC XML file that follows a `</document>` (white space
    between), outside comments, CDATA sections and processing instructions: where a byte range may start. One pass
    over the file, mapped in memory, nothing parsed."""
    with open(path, "rb") as handle:
        if handle.seek(0, io.SEEK_END) == 0:
            return
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            line, counted, starts = 1, 0, _group_starts(_DOCUMENT_CUT, data)
            try:
                for start in starts:
                    line += data[counted:start].count(b"\n")
                    counted = start
                    yield start, line
            finally:  # a consumer that stops early: the scan lets go of the map before it closes
                starts.close()


def _xml_opening(path: PathLike) -> bytes:
    """The bytes before the first `<document` tag: the XML declaration, doctype and the collection's opening."""
    with open(path, "rb") as handle:
        if handle.seek(0, io.SEEK_END) == 0:
            return b""
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            first = next(_group_starts(_DOCUMENT_TAG, data), None)
            return data[:first] if first is not None else b""


def _group_starts(pattern: re.Pattern, data) -> Iterator[int]:
    """Where `pattern`'s group 1 matched (its other matches are skipped markup). Only integers leave this function, so
    that no match object keeps the memory map from closing."""
    matches = pattern.finditer(data)
    for match in matches:
        start = match.start(1)
        del match
        if start >= 0:
            yield start


_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\]:]', re.DOTALL)


def json_document_starts(path: PathLike) -> Iterator[tuple[int, int]]:
    """`(byte, line)` of every object of a BioC JSON collection's top-level "documents" array: where a byte range may
    start (the first one aside). One pass over the file's strings and brackets, mapped in memory, nothing parsed."""
    with open(path, "rb") as handle:
        if handle.seek(0, io.SEEK_END) == 0:
            return
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            tokens = _json_tokens(data)
            try:
                depth, key, last_string, in_documents, line, counted = 0, None, None, False, 1, 0
                for start, token in tokens:
                    if token == b'"':
                        last_string = data[start:start + 11] if depth == 1 else None
                    elif token == b":":
                        key = last_string
                    elif token in (b"{", b"["):
                        if depth == 1 and token == b"[":
                            in_documents = key == b'"documents"'
                        elif depth == 2 and token == b"{" and in_documents:
                            line += data[counted:start].count(b"\n")
                            counted = start
                            yield start, line
                        depth += 1
                    else:
                        depth -= 1
                        in_documents = in_documents and depth >= 2
            finally:  # a consumer that stops early: the scan lets go of the map before it closes
                tokens.close()


def _json_tokens(data) -> Iterator[tuple[int, bytes]]:
    """Start and first byte of each string, bracket and colon; integers and bytes only leave (see `_group_starts`)."""
    matches = _JSON_TOKEN.finditer(data)
    for match in matches:
        start = match.start()
        del match
        yield start, data[start:start + 1]


def _json_opening(path: PathLike) -> bytes:
    """The bytes before the first document object: the collection's fields and `"documents": [`."""
    starts = json_document_starts(path)
    first = next(starts, None)
    starts.close()
    with open(path, "rb") as handle:
        return handle.read(first[0]) if first is not None else b""


_LXML_LINE = re.compile(r"\bline (\d+)")


class _RangeStream(io.RawIOBase):
    """A byte range of a BioC XML file as a complete collection: opening + range (+ `</collection>`), read lazily."""

    def __init__(self, file_range: FileRange, opening: bytes) -> None:
        self._handle = open(file_range.path, "rb")
        self._handle.seek(file_range.start)
        self._left = file_range.end - file_range.start
        ends_file = file_range.end == self._handle.seek(0, io.SEEK_END)
        self._handle.seek(file_range.start)
        self._pieces = [opening if file_range.start else b"", None, b"" if ends_file else b"</collection>"]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._pieces:
            if self._pieces[0] is None:  # the range itself
                data = self._handle.read(min(len(buffer), self._left))
                self._left -= len(data)
                if not data:
                    self._pieces.pop(0)
                    continue
            else:
                data, rest = self._pieces[0][:len(buffer)], self._pieces[0][len(buffer):]
                self._pieces[0:1] = [rest] if rest else []
                if not data:
                    continue
            buffer[:len(data)] = data
            return len(data)
        return 0

    def close(self) -> None:
        self._handle.close()
        super().close()


def _xml_documents(path: PathLike) -> Iterator[bioc.BioCDocument]:
    """The documents of a BioC XML file, or of a `FileRange` of one (its line numbers in errors are the file's)."""
    opening_lines, first_line = 0, 1
    if isinstance(path, FileRange):
        opening = _xml_opening(path.path) if path.start else b""
        # The opening's last line runs on into the range's first line, which is the file's line `first_line`.
        opening_lines, first_line = opening.count(b"\n"), path.first_line
        source = io.BufferedReader(_RangeStream(path, opening))
    else:
        source = str(path)
    try:
        yield from biocxml.BioCXMLDocumentReader(source)
    except etree.XMLSyntaxError as error:
        def file_line(line: int) -> int:  # a line of the range (not of the opening) shifts to the file's numbering
            return line + first_line - 1 - opening_lines if line > opening_lines else line

        message = _LXML_LINE.sub(lambda match: f"line {file_line(int(match.group(1)))}", error.msg or "")
        raise CorpusFormatError(path, file_line(error.lineno) if error.lineno else error.lineno, "expected BioC XML",
                                f"invalid XML ({message})") from None
    finally:
        if isinstance(source, io.BufferedReader):
            source.close()


def iter_bioc_documents(path: PathLike, fmt: str) -> Iterator[BioCUnit]:
    """The documents of a BioC file with their sentences (see the module docstring).

    Raises:
        CorpusFormatError: naming the file and line, for XML or JSON that does not parse, or a file without documents.
    """
    found = False
    documents = _read_json_collection(path).documents if fmt == BIOC_JSON else _xml_documents(path)
    for document in documents:
        found = True
        yield BioCUnit(document)
    if not found:
        raise CorpusFormatError(path, 1, "expected at least one BioC document", "none")


def bioc_header(collection: bioc.BioCCollection, fmt: str) -> str:
    """Everything the output holds before its first document."""
    if fmt == BIOC_JSON:
        fields = {"source": collection.source, "date": collection.date, "key": collection.key,
                  "infons": collection.infons}
        return json.dumps(fields, ensure_ascii=False)[:-1] + ', "documents": [\n'
    elements = []
    for tag in ("source", "date", "key"):
        element = etree.Element(tag)
        element.text = getattr(collection, tag)
        elements.append(element)
    for key, value in collection.infons.items():
        element = etree.Element("infon", {"key": str(key)})
        element.text = str(value)
        elements.append(element)
    info = "".join(etree.tostring(element, encoding="unicode") for element in elements)
    return f"<?xml version='1.0' encoding='UTF-8'?>\n<!DOCTYPE collection SYSTEM 'BioC.dtd'>\n<collection>{info}\n"


def bioc_footer(fmt: str) -> str:
    """Everything the output holds after its last document."""
    return "\n]}\n" if fmt == BIOC_JSON else "</collection>\n"


def _annotation(index: int, entity: dict[str, Any]) -> bioc.BioCAnnotation:
    annotation = bioc.BioCAnnotation()
    annotation.id = str(index)
    annotation.infons = {"type": entity["type"], "identifier": NO_IDENTIFIER,
                         "annotator": f"{ANNOTATOR_PREFIX}{entity['task']}"}
    if entity.get("label_type") is not None:  # the head's own type, beside the shared one
        annotation.infons["label_type"] = entity["label_type"]
    if entity.get("score") is not None:
        annotation.infons["score"] = f"{entity['score']:.{SCORE_DECIMALS}f}"
    annotation.add_location(bioc.BioCLocation(entity["start"], entity["end"] - entity["start"]))
    annotation.text = entity["text"]
    return annotation


def _passage_of(document: bioc.BioCDocument, start: int) -> bioc.BioCPassage:
    """The passage whose text (or sentence text) holds document offset `start`."""
    for passage in document.passages:
        spans = [(passage.offset, passage.offset + len(passage.text))] if passage.text else [
            (sentence.offset, sentence.offset + len(sentence.text or "")) for sentence in passage.sentences]
        if any(first <= start < end for first, end in spans):
            return passage
    raise AssertionError(f"offset {start} is in no passage of document {document.id}")


def predicted_document(unit: BioCUnit, entities: Sequence[dict[str, Any]]) -> bioc.BioCDocument:
    """A copy of the unit's document whose annotations and relations are exactly `entities` (document frame)."""
    document = copy.deepcopy(unit.document)
    document.annotations, document.relations = [], []
    for passage in document.passages:
        passage.annotations, passage.relations = [], []
        for sentence in passage.sentences:
            sentence.annotations, sentence.relations = [], []
    for index, entity in enumerate(sorted(entities, key=lambda entity: (entity["start"], entity["end"]))):
        _passage_of(document, entity["start"]).annotations.append(_annotation(index, entity))
    return document


def render_bioc_entities(unit: BioCUnit, entities: Sequence[dict[str, Any]], fmt: str) -> str:
    """One document of the output, with `entities` (dicts with start, end, text, type, task and maybe score)."""
    document = predicted_document(unit, entities)
    if fmt == BIOC_JSON:
        return json.dumps(biocjson.toJSON(document), ensure_ascii=False)
    return etree.tostring(biocxml.encoder.encode_document(document), encoding="unicode") + "\n"


def render_bioc_document(unit: BioCUnit, labels_of_sentences: Sequence[Mapping[str, Sequence[str]]], merge: str,
                         fmt: str, scores_of_sentences: Sequence[Mapping[str, Sequence[Mapping[str, float]]]] | None
                         = None, entity_type_of: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """One document of the output from the predicted labels of its sentences (and the heads' word marginals, which
    give each annotation its `score`), under a merge policy, typed by `entity_type_of` (`HSTLConfig.entity_types`)."""
    assert len(unit.sentences) == len(labels_of_sentences), "one label mapping per sentence"
    scores_of_sentences = scores_of_sentences or [None] * len(labels_of_sentences)
    entities = [entity for sentence, labels_by_task, scores_by_task
                in zip(unit.sentences, labels_of_sentences, scores_of_sentences)
                for entity in sentence_entities(sentence, labels_by_task, merge, scores_by_task,
                                                entity_type_of=entity_type_of)]
    return render_bioc_entities(unit, entities, fmt)


def write_bioc(path: PathLike, collection: bioc.BioCCollection, rendered_documents: Sequence[str], fmt: str) -> None:
    """A whole BioC file from rendered documents (the streaming writer does the same piece by piece)."""
    Path(path).write_text(bioc_header(collection, fmt) + BIOC_SEPARATOR[fmt].join(rendered_documents)
                          + bioc_footer(fmt), encoding="utf-8")
