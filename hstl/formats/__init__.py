"""File formats of prediction, and the CoNLL reader and writer that the whole package uses.

One module per format: `conll` (token per line; also the training and scoring reader), `text` (plain text in, JSON
Lines out), `pubtator`, `bioc` (BioC XML and BioC JSON). `common` holds what all readers share, including the one rule for separator lines. A new
format is a module here plus an entry in `FORMATS`: how to read it lazily unit by unit, the sentences (lists of
words) of a unit, and how to write a tagged unit back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import PredictionInputError
from .bioc import (
    BIOC_JSON, BIOC_SEPARATOR, BIOC_XML, bioc_footer, bioc_header, iter_bioc_documents, read_collection_info,
    render_bioc_document, sniff_bioc,
)
from .common import PathLike
from .conll import iter_conll, render_conll_sentence
from .pubtator import iter_pubtator_documents, render_pubtator_document
from .text import iter_text_sentences, render_text_sentence


@dataclass(frozen=True)
class InputFormat:
    """How one input format is read (lazily, unit by unit), split into sentences of words, and written back."""

    name: str
    unit_name: str
    read_units: Callable[[PathLike], Iterator[Any]]
    unit_sentences: Callable[[Any], list[list[str]]]
    render_unit: Callable[[Any, list[dict[str, list[str]]], str, list[dict[str, list[dict[str, float]]]],
                           dict[str, dict[str, str]] | None], str]
    """`render_unit(unit, labels, merge, scores, entity_type_of)`: per sentence of the unit, `{task: labels}` and
    `{task: word marginals}` (`hstl.inference.tagging.TaggedSentences`), rendered under a merge policy with the shared
    entity types of `HSTLConfig.entity_types`."""
    header: Callable[[PathLike], str] = lambda path: ""
    """What the output holds before its first unit (e.g. a BioC collection's opening), from the input file."""
    separator: str = ""
    """What stands between two rendered units (e.g. the comma between BioC JSON documents)."""
    footer: str = ""
    """What the output holds after its last unit."""
    output_suffix: str = ""
    """Appended to an input file's name to name its output when a folder is tagged (`a.txt` -> `a.txt.jsonl`)."""


def _bioc_format(fmt: str) -> InputFormat:
    return InputFormat(
        fmt, "documents", lambda path: iter_bioc_documents(path, fmt),
        lambda unit: [sentence.words for sentence in unit.sentences],
        lambda unit, labels, merge, scores, types: render_bioc_document(unit, labels, merge, fmt, scores, types),
        header=lambda path: bioc_header(read_collection_info(path, fmt), fmt), separator=BIOC_SEPARATOR[fmt],
        footer=bioc_footer(fmt), output_suffix=".pred.xml" if fmt == BIOC_XML else ".pred.json",
    )


def _iter_unlabelled_conll(path: PathLike):
    """Only the first column is read: a gold label column in the input is ignored, not copied."""
    return iter_conll(path, labelled=False)


FORMATS: dict[str, InputFormat] = {
    "conll": InputFormat(
        "conll", "sentences", _iter_unlabelled_conll, lambda sentence: [sentence.tokens],
        lambda sentence, labels, merge, scores, types: render_conll_sentence(sentence, labels[0], merge, scores[0],
                                                                             types),
        output_suffix=".pred.tsv",
    ),
    "text": InputFormat(
        "text", "sentences", iter_text_sentences, lambda sentence: [sentence.words],
        lambda sentence, labels, merge, scores, types: render_text_sentence(sentence, labels[0], merge, scores[0],
                                                                            types),
        output_suffix=".jsonl",
    ),
    "pubtator": InputFormat(
        "pubtator", "documents", iter_pubtator_documents,
        lambda document: [sentence.words for sentence in document.sentences], render_pubtator_document,
        output_suffix=".pred.pubtator",
    ),
    BIOC_XML: _bioc_format(BIOC_XML),
    BIOC_JSON: _bioc_format(BIOC_JSON),
}
INPUT_FORMATS = tuple(FORMATS)
FORMAT_BY_SUFFIX = {".tsv": "conll", ".conll": "conll", ".iob": "conll", ".txt": "text", ".pubtator": "pubtator",
                    ".xml": BIOC_XML, ".json": BIOC_JSON}
"""File extension -> input format; a name ending in `.pubtator.txt` is PubTator, not text. A file that starts like a
BioC collection is BioC whatever its name (`sniff_bioc`)."""


def detect_format(path: PathLike, requested: str | None = None) -> str:
    """The input format: `requested` when given, else from the file name (see `FORMAT_BY_SUFFIX`)."""
    if requested is not None:
        if requested not in INPUT_FORMATS:
            raise PredictionInputError(f"--format: expected one of {list(INPUT_FORMATS)}, got {requested!r}")
        return requested
    sniffed = sniff_bioc(path) if Path(path).is_file() else None
    if sniffed is not None:
        return sniffed
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
