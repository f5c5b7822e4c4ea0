"""BioC XML and BioC JSON: reading documents into sentences, and writing predictions back with every passage, offset,
document id and infon kept (checked by reading the output with the `bioc` package itself)."""

from __future__ import annotations

import json
import re

import pytest

bioc = pytest.importorskip("bioc")
from bioc import biocjson, biocxml  # noqa: E402

from hstl.formats.bioc import (  # noqa: E402
    BIOC_JSON, BIOC_XML, BIOC_SEPARATOR, iter_bioc_documents, read_collection_info, render_bioc_entities, sniff_bioc,
    write_bioc,
)
from hstl.formats.common import CorpusFormatError  # noqa: E402


TITLE = "Cisplatin-induced nephrotoxicity in mice."
ABSTRACT = "We gave 5 mg/kg cisplatin to BALB/c mice. Renal failure followed in e.g. two cases."


def _collection() -> bioc.BioCCollection:
    collection = bioc.BioCCollection()
    collection.source, collection.date, collection.key = "PubMed", "20261202", "collection.key"
    collection.infons["note"] = "two documents"
    for pmid, shift in (("12345", 0), ("67890", 7)):
        document = bioc.BioCDocument()
        document.id = pmid
        document.infons["journal"] = f"J {pmid}"
        title = bioc.BioCPassage()
        title.infons["type"] = "title"
        title.offset, title.text = 0, TITLE
        abstract = bioc.BioCPassage()
        abstract.infons["type"] = "abstract"
        # PubTator's convention is one character after the title; any offset must be kept as it is.
        abstract.offset, abstract.text = len(TITLE) + 1 + shift, ABSTRACT
        gold = bioc.BioCAnnotation()  # a gold annotation: the output must not keep it
        gold.id, gold.text, gold.infons = "g1", "Cisplatin", {"type": "Chemical"}
        gold.add_location(bioc.BioCLocation(0, 9))
        title.add_annotation(gold)
        document.add_passage(title)
        document.add_passage(abstract)
        collection.add_document(document)
    return collection


@pytest.fixture(params=[BIOC_XML, BIOC_JSON])
def bioc_file(request, tmp_path):
    path = tmp_path / ("input.xml" if request.param == BIOC_XML else "input.json")
    with open(path, "w", encoding="utf-8") as handle:
        (biocxml if request.param == BIOC_XML else biocjson).dump(_collection(), handle)
    return path, request.param


def _load(path, fmt) -> bioc.BioCCollection:
    with open(path, encoding="utf-8") as handle:
        return (biocxml if fmt == BIOC_XML else biocjson).load(handle)


def test_format_is_sniffed_from_the_content(bioc_file, tmp_path):
    path, fmt = bioc_file
    assert sniff_bioc(path) == fmt
    (tmp_path / "plain.txt").write_text("{not bioc} <collection", encoding="utf-8")
    assert sniff_bioc(tmp_path / "plain.txt") is None


def test_sentences_carry_document_offsets_of_their_passage(bioc_file):
    path, fmt = bioc_file
    units = list(iter_bioc_documents(path, fmt))
    assert [unit.document.id for unit in units] == ["12345", "67890"]
    for unit, shift in zip(units, (0, 7)):
        texts = [sentence.text for sentence in unit.sentences]
        assert texts == [TITLE, "We gave 5 mg/kg cisplatin to BALB/c mice.", "Renal failure followed in e.g. two cases."]
        abstract_offset = len(TITLE) + 1 + shift
        for sentence in unit.sentences[1:]:
            local = sentence.start - abstract_offset
            assert ABSTRACT[local : local + len(sentence.text)] == sentence.text
            for word, start, end in sentence.tokens:
                assert ABSTRACT[start - abstract_offset : end - abstract_offset] == word


def _entities_of(unit):
    """The first word of every sentence as a mention: spans in both passages."""
    return [{"start": sentence.tokens[0][1], "end": sentence.tokens[0][2], "text": sentence.tokens[0][0],
             "type": "Chemical", "label_type": "Simple_chemical", "task": "BC5CDR-chem", "score": 0.875}
            for sentence in unit.sentences]


def test_round_trip_keeps_everything_and_replaces_annotations(bioc_file, tmp_path):
    path, fmt = bioc_file
    units = list(iter_bioc_documents(path, fmt))
    out = tmp_path / ("out.xml" if fmt == BIOC_XML else "out.json")
    write_bioc(out, read_collection_info(path, fmt), [render_bioc_entities(unit, _entities_of(unit), fmt)
                                                       for unit in units], fmt)
    original, written = _collection(), _load(out, fmt)
    assert (written.source, written.date, written.key, written.infons) == \
           (original.source, original.date, original.key, original.infons)
    assert [document.id for document in written.documents] == [document.id for document in original.documents]
    for before, after in zip(original.documents, written.documents):
        assert after.infons == before.infons
        assert [(p.offset, p.text, p.infons) for p in after.passages] == \
               [(p.offset, p.text, p.infons) for p in before.passages]
        annotations = [annotation for passage in after.passages for annotation in passage.annotations]
        assert [annotation.text for annotation in annotations] == ["Cisplatin", "We", "Renal"]
        for passage in after.passages:
            for annotation in passage.annotations:
                (location,) = annotation.locations
                local = location.offset - passage.offset
                assert passage.text[local : local + location.length] == annotation.text
                assert annotation.infons == {"type": "Chemical", "identifier": "-", "annotator": "HSTL:BC5CDR-chem",
                                             "label_type": "Simple_chemical", "score": "0.8750"}
    assert "g1" not in out.read_text(encoding="utf-8")


def test_json_documents_are_joined_into_one_valid_array(tmp_path):
    path = tmp_path / "input.json"
    with open(path, "w", encoding="utf-8") as handle:
        biocjson.dump(_collection(), handle)
    rendered = [render_bioc_entities(unit, [], BIOC_JSON) for unit in iter_bioc_documents(path, BIOC_JSON)]
    assert BIOC_SEPARATOR[BIOC_JSON].strip() == ","
    write_bioc(tmp_path / "out.json", read_collection_info(path, BIOC_JSON), rendered, BIOC_JSON)
    assert len(_load(tmp_path / "out.json", BIOC_JSON).documents) == 2


@pytest.mark.parametrize("name, content, line", [
    ("bad.xml", "<?xml version='1.0'?>\n<collection>\n<document><id>1</id>\n</collection>\n", 4),
    ("bad.json", '{"source": "x", "documents": [\n{"id": "1",, }]}', 2),
])
def test_malformed_bioc_names_file_and_line(tmp_path, name, content, line):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    fmt = BIOC_XML if name.endswith(".xml") else BIOC_JSON
    with pytest.raises(CorpusFormatError) as caught:
        list(iter_bioc_documents(path, fmt))
    assert f"{path}:{line}:" in str(caught.value)


def _dump_with_the_bioc_package(path, texts: list[str], module, source: str = "") -> None:
    """One document per text (ids pmid0, pmid1, ...; one passage at offset 10 x index), written by `module.dump`."""
    collection = bioc.BioCCollection()
    collection.source = source
    for index, text in enumerate(texts):
        document = bioc.BioCDocument()
        document.id = f"pmid{index}"
        passage = bioc.BioCPassage()
        passage.offset, passage.text = 10 * index, text
        document.add_passage(passage)
        collection.add_document(document)
    with open(path, "w", encoding="utf-8") as handle:
        module.dump(collection, handle)


def _runs_of_processes(path, fmt: str, num_processes: int) -> list[list]:
    """The pieces each of `num_processes` processes reads, as a launched predict.py cuts its input: the feed's pieces
    of the whole file (1-byte pieces: each possible start starts one), each process its run of them."""
    from hstl.inference.sharding import piece_ranges, pieces_of_process, whole_file

    pieces = piece_ranges(whole_file(path), fmt, 1)
    return [pieces_of_process(pieces, rank, num_processes) for rank in range(num_processes)]


def _documents_range_by_range(path, fmt: str, num_processes: int):
    """The pieces of `num_processes` processes, run after run (checked to tile the file) and, read piece after piece,
    the documents' ids with their passages' offsets and texts."""
    ranges = [piece for run in _runs_of_processes(path, fmt, num_processes) for piece in run]
    assert ranges[0].start == 0 and ranges[-1].end == path.stat().st_size
    assert [r.start for r in ranges[1:]] == [r.end for r in ranges[:-1]]
    got = [(unit.document.id, [(p.offset, p.text) for p in unit.document.passages])
           for file_range in ranges if file_range.start < file_range.end
           for unit in iter_bioc_documents(file_range, fmt)]
    return ranges, got


def _xml_document(pmid: str, text: str) -> str:
    return f"<document><id>{pmid}</id><passage><offset>0</offset><text>{text}</text></passage></document>"


OPENING = ("<?xml version='1.0' encoding='UTF-8'?>\n<!DOCTYPE collection SYSTEM 'BioC.dtd'>\n"
           "<collection><source>s</source><date>d</date><key>k</key>\n")


@pytest.mark.parametrize("layout", ["bioc-package", "one-line", "blank-lines", "markup-with-document-text",
                                    "empty-first-document"])
@pytest.mark.parametrize("num_processes", [1, 2, 3, 5, 9])
def test_xml_byte_ranges_hold_the_documents_of_the_whole_file(tmp_path, layout, num_processes):
    """Cut into ranges for N processes, a BioC XML file gives back, range after range, the documents the `bioc`
    package reads from the whole file: same ids, passages, offsets and texts, none lost or repeated."""
    path = tmp_path / "in.xml"
    texts = [f"Cisplatin dose {index} harmed {'the kidney ' * index}." for index in range(7)]
    if layout == "bioc-package":
        _dump_with_the_bioc_package(path, texts, biocxml)
    elif layout == "markup-with-document-text":  # `<document>` as text in a comment, CDATA and a processing instruction
        texts[3] = "<![CDATA[a </document> <document> b]]>"
        body = "\n".join(_xml_document(f"pmid{index}", text) for index, text in enumerate(texts))
        path.write_text(OPENING + "<!-- one <document> per abstract -->\n<?note </document> <document>?>\n" + body
                        + "</collection>\n", encoding="utf-8")
    else:
        joiner = "" if layout == "one-line" else "\n\n  \n"
        body = joiner.join(_xml_document(f"pmid{index}", text) for index, text in enumerate(texts))
        first = "<document/>\n" if layout == "empty-first-document" else ""
        path.write_text(OPENING + first + body + "</collection>\n", encoding="utf-8")
    # (`bioc.load` gives an empty document's id as None, its document reader as "")
    expected = [(d.id or "", [(p.offset, p.text) for p in d.passages]) for d in _load(path, BIOC_XML).documents]
    num_documents = 8 if layout == "empty-first-document" else 7
    ranges, got = _documents_range_by_range(path, BIOC_XML, num_processes)
    assert got == expected and len(got) == num_documents
    # Every document but the first (and the one after an empty `<document/>`) starts a piece, each after a
    # </document>, and the first piece starts at 0.
    assert len(ranges) == 7 and all(r.start < r.end for r in ranges)


def test_a_process_parses_only_its_range_and_names_the_file_line(tmp_path):
    """Four documents of about equal length (long beside the collection's opening), the last one broken on line 8:
    the first of 2 processes reads its two documents; the second reports line 8 of the file, as reading the whole
    file does."""
    from hstl.inference import sharding
    from hstl.formats import FORMATS

    path = tmp_path / "in.xml"
    body = "\n".join(_xml_document(str(index), "Aspirin helps. " * 12) for index in (1, 2, 3))
    path.write_text(OPENING + body + "\n<document><id>4</id><passage><offset>0</offset>\n"
                    f"<text>{'Aspirin helps. ' * 12}<b></text></passage></document>\n</collection>\n",
                    encoding="utf-8")
    with pytest.raises(CorpusFormatError) as whole:
        list(iter_bioc_documents(path, BIOC_XML))
    assert f"{path}:8:" in str(whole.value)
    first, second_run = _runs_of_processes(path, BIOC_XML, 2)
    assert [unit.document.id for piece in first for unit in FORMATS[BIOC_XML].read_units(piece)] == ["1", "2"]
    with pytest.raises(CorpusFormatError) as second:
        sharding.count_units(second_run, BIOC_XML, 0)
    assert f"{path}:8:" in str(second.value)
    # lxml's own message names lines too: the file's, as reading the whole file gives them
    assert re.findall(r"line \d+", str(second.value)) == re.findall(r"line \d+", str(whole.value))
    assert re.findall(r"line \d+", str(whole.value)) and set(re.findall(r"line (\d+)", str(whole.value))) == {"8"}


def test_an_empty_file_is_reported_by_the_first_process(tmp_path):
    """Sharded or not, an empty BioC XML file stops with one line naming it; the other processes get no range."""
    from hstl.inference import sharding
    from hstl.formats import FORMATS

    path = tmp_path / "empty.xml"
    path.write_bytes(b"")
    with pytest.raises(CorpusFormatError, match=str(path)):
        list(iter_bioc_documents(path, BIOC_XML))
    first, second = _runs_of_processes(path, BIOC_XML, 2)
    with pytest.raises(CorpusFormatError, match=str(path)):
        sharding.count_units(first, BIOC_XML, 0)
    assert second == []


def _json_document(pmid: str, text: str) -> str:
    return json.dumps({"id": pmid, "infons": {}, "passages": [{"offset": 0, "infons": {}, "text": text, "sentences": [],
                                                               "annotations": [], "relations": []}],
                       "annotations": [], "relations": []})


@pytest.mark.parametrize("layout", ["bioc-package", "documents-first-with-brackets-in-strings"])
@pytest.mark.parametrize("num_processes", [1, 2, 3, 5, 9])
def test_json_byte_ranges_hold_the_documents_of_the_whole_file(tmp_path, layout, num_processes):
    """As for XML: cut into ranges for N processes, a BioC JSON file gives back the documents the `bioc` package reads
    from the whole file, also when strings hold brackets, quotes and `"documents": [`, and the array comes first."""
    path = tmp_path / "in.json"
    texts = [f'Dose {index} {{of}} [cisplatin] "quoted" \\\\ "documents": [{{ and "[{{ ' + "kidney " * index
             for index in range(7)]
    if layout == "bioc-package":
        _dump_with_the_bioc_package(path, texts, biocjson, source='"documents": [{')
    else:
        documents = ",\n".join(_json_document(f"pmid{index}", text) for index, text in enumerate(texts))
        path.write_text('{"documents": [\n' + documents + '\n], "source": "s", "date": "d", "key": "k", '
                        '"infons": {"note": "]}[{"}, "extra": {"nested": {"id": "not a document"}}}\n', encoding="utf-8")
    expected = [(d.id, [(p.offset, p.text) for p in d.passages]) for d in _load(path, BIOC_JSON).documents]
    ranges, got = _documents_range_by_range(path, BIOC_JSON, num_processes)
    assert got == expected and len(got) == 7
    assert len(ranges) == 7 and all(r.start < r.end for r in ranges)


def test_a_json_range_names_the_file_line_of_its_error(tmp_path):
    """Four documents, one per line (lines 2-5), the last broken: the first of 2 processes reads its two; the second
    reports line 5 of the file, as reading the whole file does."""
    from hstl.inference import sharding
    from hstl.formats import FORMATS

    path = tmp_path / "in.json"
    documents = [_json_document(str(index), "Aspirin helps. " * 12) for index in (1, 2, 3, 4)]
    documents[3] = documents[3].replace('"offset": 0', '"offset": 0,,')
    path.write_text('{"source": "s", "documents": [\n' + ",\n".join(documents) + "\n]}\n", encoding="utf-8")
    with pytest.raises(CorpusFormatError) as whole:
        list(iter_bioc_documents(path, BIOC_JSON))
    assert f"{path}:5:" in str(whole.value)
    first, second_run = _runs_of_processes(path, BIOC_JSON, 2)
    assert [unit.document.id for piece in first for unit in FORMATS[BIOC_JSON].read_units(piece)] == ["1", "2"]
    with pytest.raises(CorpusFormatError) as second:
        sharding.count_units(second_run, BIOC_JSON, 0)
    assert f"{path}:5:" in str(second.value)
