"""BioC XML and BioC JSON: reading documents into sentences, and writing predictions back with every passage, offset,
document id and infon kept (checked by reading the output with the `bioc` package itself)."""

from __future__ import annotations

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
