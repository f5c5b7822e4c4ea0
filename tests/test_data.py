"""Tests for hstl/data.py (corpus reading and writing, HF datasets, label lists) and the shipped sample."""

from __future__ import annotations

import importlib.util
import io
import json
import pickle
import re
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hstl.data import (
    DOCSTART,
    CorpusFormatError,
    Sentence,
    label_list_from,
    load_hf_token_dataset,
    read_conll,
    read_split_dir,
    sample_data_dir,
    write_conll,
)
from labels_hstl import entity_types, extract_chunks

REPO_ROOT = Path(__file__).resolve().parents[1]

CLEAN = (
    "-DOCSTART-\tO\n"
    "\n"
    "Aspirin\tB-Chemical\n"
    "reduces\tO\n"
    "fever\tB-Disease\n"
    ".\tO\n"
    "\n"
    "Low\tO\n"
    "dose\tI-Chemical\n"  # I- after O: valid input, kept as read
    "\n"
    "-DOCSTART-\tO\n"
    "\n"
    "Ω-3\tB-Chemical\n"
    "\n"
)
CLEAN_SENTENCES = [
    Sentence(["Aspirin", "reduces", "fever", "."], ["B-Chemical", "O", "B-Disease", "O"], line=3, starts_document=True),
    Sentence(["Low", "dose"], ["O", "I-Chemical"], line=8),
    Sentence(["Ω-3"], ["B-Chemical"], line=13, starts_document=True),
]


def write_file(directory: Path, name: str, content: str | bytes) -> Path:
    path = directory / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def content_of(sentences: list[Sentence]) -> list[tuple[list[str], list[str] | None, bool]]:
    """What a sentence says, without the line number (which formatting changes may shift)."""
    return [(sentence.tokens, sentence.labels, sentence.starts_document) for sentence in sentences]


def canonical_text(sentences: list[Sentence]) -> str:
    buffer = io.StringIO()
    write_conll(buffer, sentences)
    return buffer.getvalue()


def messy(text: str, *, crlf=False, bom=False, trailing="", blank_runs=False, no_final_newline=False, spaces=False):
    """`text` with formatting noise that carries no information and must not change what is read."""
    if spaces:
        text = text.replace("\t", "   ")
    if blank_runs:
        text = "\n\n" + text.replace("\n\n", "\n\n\n \n\n")
    if trailing:
        text = "\n".join(line + trailing for line in text.split("\n"))
    if no_final_newline:
        text = text.rstrip("\n" + trailing)
    if crlf:
        text = text.replace("\n", "\r\n")
    return ("\ufeff" if bom else "") + text


# ---------------------------------------------------------------------------------------------------------------------
# Reading clean and noisy files


def test_reads_clean_file(tmp_path):
    sentences = read_conll(write_file(tmp_path, "clean.tsv", CLEAN))
    assert sentences == CLEAN_SENTENCES


def test_unlabelled_reading_takes_first_column(tmp_path):
    path = write_file(tmp_path, "raw.tsv", "a\tPOS\tO\nb\n\nc d e\n")
    sentences = read_conll(path, labelled=False)
    assert content_of(sentences) == [(["a", "b"], None, False), (["c"], None, False)]


def test_middle_columns_are_ignored(tmp_path):
    path = write_file(tmp_path, "conll2003.tsv", "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n")
    assert content_of(read_conll(path)) == [(["EU", "rejects"], ["B-ORG", "O"], False)]


NOISE = {
    "crlf": {"crlf": True},
    "bom": {"bom": True},
    "trailing spaces": {"trailing": "  "},
    "trailing tabs": {"trailing": "\t \t"},
    "blank-line runs": {"blank_runs": True},
    "no final newline": {"no_final_newline": True},
    "space-separated columns": {"spaces": True},
    "all at once": {"crlf": True, "bom": True, "trailing": " \t", "blank_runs": True, "no_final_newline": True},
}


@pytest.mark.parametrize("noise", NOISE.values(), ids=NOISE.keys())
def test_noisy_file_reads_like_clean_one(tmp_path, noise):
    sentences = read_conll(write_file(tmp_path, "noisy.tsv", messy(CLEAN, **noise)))
    assert content_of(sentences) == content_of(CLEAN_SENTENCES)
    if not noise.get("blank_runs"):  # the other kinds of noise keep every line where it was
        assert [sentence.line for sentence in sentences] == [3, 8, 13]


# ---------------------------------------------------------------------------------------------------------------------
# Malformed files

MALFORMED = {
    "not utf-8": (b"a\tO\n\nb\tO\ncaf\xe9\tO\n", 4, "expected UTF-8"),
    "not utf-8 after a bom": (b"\xef\xbb\xbfa\tO\n\xff\tO\n", 2, "expected UTF-8"),
    "empty file": (b"", 1, "an empty file"),
    "only blank lines": (b"\n \n\t\n", 3, "no token line in 3 line(s)"),
    "only document markers": (b"-DOCSTART-\tO\n\n", 2, "expected at least one sentence"),
    "missing label": (b"a\tO\nb\tO\nc\n", 3, "expected a token and a label"),
    "iobes label": (b"a\tO\n\nb\tS-Gene\n", 3, "IOB/IOB2 only"),
    "label without type": (b"a\tB-\n", 1, "IOB/IOB2 only"),
    "lower-case outside": (b"a\tO\nb\to\n", 2, "IOB/IOB2 only"),
    "empty token": (b"a\tO\n\tO\n", 2, "expected a non-empty token"),
    "whitespace token": (b"a\tO\n\n\n \tO\n", 4, "expected a non-empty token"),
    "space-indented line": (b"a O\n b O\n", 2, "expected a non-empty token"),
    "document marker inside a sentence": (b"a\tO\n-DOCSTART-\tO\n", 2, "only between sentences"),
}


@pytest.mark.parametrize("content, line, expected", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_file_names_file_and_line(tmp_path, content, line, expected):
    path = write_file(tmp_path, "bad_corpus.tsv", content)
    with pytest.raises(CorpusFormatError) as caught:
        read_conll(path)
    error = caught.value
    assert (error.path, error.line) == (str(path), line)
    assert str(error).startswith(f"{path}:{line}: ")
    assert "bad_corpus.tsv" in str(error) and expected in str(error) and ", got " in str(error)


def test_tokens_of_unusual_whitespace_are_tokens_and_only_ascii_blank_lines_separate(tmp_path):
    content = ("a\tO\n\u00a0\tB-X\n\u2009\tI-X\n\u3000\tO\n\x0c\tO\n \t \r\n"  # a line of spaces and TABs ends it
               "b\tO\n\u3000\n")  # unlabelled-looking line: in labelled mode, a token without a label
    path = write_file(tmp_path, "odd.tsv", content.replace("\u3000\n", "\u3000\tO\n\u3000\u00a0\tO\n"))
    sentences = read_conll(path)
    assert content_of(sentences) == [
        (["a", "\u00a0", "\u2009", "\u3000", "\x0c"], ["O", "B-X", "I-X", "O", "O"], False),
        (["b", "\u3000", "\u3000\u00a0"], ["O", "O", "O"], False),
    ]
    unlabelled = write_file(tmp_path, "odd_unlabelled.tsv", "a\n\u3000\n\u00a0\u2009\n\t \nb\n\u2028\n")
    assert content_of(read_conll(unlabelled, labelled=False)) == [
        (["a", "\u3000", "\u00a0\u2009"], None, False), (["b", "\u2028"], None, False),
    ]
    # The writer agrees: such tokens are written and read back as they are.
    assert read_text(canonical_text(sentences)) == sentences


def test_format_error_survives_pickling():
    error = CorpusFormatError("x.tsv", 7, "expected an IOB2 label", "'S-X'")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.line, str(copy)) == ("x.tsv", 7, "x.tsv:7: expected an IOB2 label, got 'S-X'")
    assert str(CorpusFormatError("x.tsv", None, "expected a", "b")) == "x.tsv: expected a, got b"


def test_sentence_rejects_label_count_mismatch():
    with pytest.raises(ValueError, match="expected one label per token"):
        Sentence(["a", "b"], ["O"], line=1)


# ---------------------------------------------------------------------------------------------------------------------
# Writing


def test_write_to_path_gives_canonical_bytes(tmp_path):
    path = tmp_path / "out.tsv"
    write_conll(path, CLEAN_SENTENCES)
    assert path.read_bytes() == CLEAN.encode("utf-8")


def test_write_unlabelled_sentences(tmp_path):
    path = tmp_path / "raw.tsv"
    write_conll(path, [Sentence(["a", "b"], None, line=1, starts_document=True)])
    assert path.read_text(encoding="utf-8") == "-DOCSTART-\tO\n\na\nb\n\n"
    assert content_of(read_conll(path, labelled=False)) == [(["a", "b"], None, True)]


UNWRITABLE = {
    "no tokens": (Sentence([], [], line=5), "expected at least one token"),
    "empty token": (Sentence(["a", ""], ["O", "O"], line=1), "token 1: expected a non-empty string token"),
    "ASCII space token": (Sentence([" "], ["O"], line=1), "expected a non-empty string token"),
    "token not a string": (Sentence(["a", 7], ["O", "O"], line=1), "token 1: expected a non-empty string token, got 7"),
    "token with tab": (Sentence(["a\tb"], ["O"], line=1), "without TAB"),
    "token with newline": (Sentence(["a\nb"], ["O"], line=1), "line breaks"),
    "docstart token": (Sentence([DOCSTART], ["O"], line=1), DOCSTART),
    "unlabelled token with space": (Sentence(["a b"], None, line=1), "spaces"),
    "iobes label": (Sentence(["a"], ["S-Gene"], line=1), "IOB/IOB2 only"),
}


@pytest.mark.parametrize("sentence, expected", UNWRITABLE.values(), ids=UNWRITABLE.keys())
def test_write_rejects_what_would_not_read_back(sentence, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        write_conll(io.StringIO(), [Sentence(["ok"], ["O"], line=1), sentence])


# Tokens: anything without whitespace or control characters (surrogates cannot be encoded as UTF-8, and a file
# cannot start with U+FEFF without it being read as a byte order mark), or a token of whitespace other than ASCII
# space and TAB, which is a token too.
TOKEN_CHARACTERS = st.characters(exclude_categories=("Z", "Cc", "Cs"), exclude_characters="\ufeff")
UNUSUAL_WHITESPACE = ["\u00a0", "\u2009", "\u3000", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\u200b", "\u1680"]
TOKENS = st.one_of(
    st.text(TOKEN_CHARACTERS, min_size=1, max_size=6).filter(lambda token: token != DOCSTART),
    st.lists(st.sampled_from(UNUSUAL_WHITESPACE), min_size=1, max_size=3).map("".join),
)
ENTITY_TYPES = st.text(TOKEN_CHARACTERS, min_size=1, max_size=4)


@st.composite
def corpora(draw, labelled: bool = True) -> list[Sentence]:
    types = draw(st.lists(ENTITY_TYPES, min_size=1, max_size=3))
    chunk_label = st.builds(lambda tag, kind: f"{tag}-{kind}", st.sampled_from("BI"), st.sampled_from(types))
    label = st.one_of(st.just("O"), chunk_label)
    sentences = []
    for _ in range(draw(st.integers(1, 4))):
        tokens = draw(st.lists(TOKENS, min_size=1, max_size=5))
        labels = [draw(label) for _ in tokens] if labelled else None
        sentences.append(Sentence(tokens, labels, line=0, starts_document=draw(st.booleans())))
    return sentences


def read_text(text: str, labelled: bool = True) -> list[Sentence]:
    with tempfile.TemporaryDirectory() as directory:
        return read_conll(write_file(Path(directory), "corpus.tsv", text), labelled=labelled)


@settings(max_examples=60, deadline=None)
@given(corpus=st.one_of(corpora(labelled=True), corpora(labelled=False)))
def test_canonical_round_trip(corpus):
    text = canonical_text(corpus)
    labelled = corpus[0].labels is not None
    sentences = read_text(text, labelled=labelled)
    assert content_of(sentences) == content_of(corpus)
    assert canonical_text(sentences) == text
    # Each sentence's line number points at its first token.
    lines = text.split("\n")
    for sentence in sentences:
        assert lines[sentence.line - 1].split("\t")[0] == sentence.tokens[0]


@settings(max_examples=40, deadline=None)
@given(
    corpus=corpora(),
    crlf=st.booleans(),
    bom=st.booleans(),
    trailing=st.sampled_from(["", " ", "\t", " \t  "]),
    blank_runs=st.booleans(),
    no_final_newline=st.booleans(),
)
def test_noise_never_changes_what_is_read(corpus, crlf, bom, trailing, blank_runs, no_final_newline):
    text = messy(
        canonical_text(corpus),
        crlf=crlf,
        bom=bom,
        trailing=trailing,
        blank_runs=blank_runs,
        no_final_newline=no_final_newline,
    )
    assert content_of(read_text(text)) == content_of(corpus)


# ---------------------------------------------------------------------------------------------------------------------
# Corpus folders and label lists


def test_read_split_dir_accepts_aliases(tmp_path):
    write_file(tmp_path, "train.tsv", "a\tB-X\n")
    write_file(tmp_path, "validation.tsv", "b\tO\n")
    splits = read_split_dir(tmp_path)
    assert list(splits) == ["train", "validation"]
    assert content_of(splits["validation"]) == [(["b"], ["O"], False)]


def test_read_split_dir_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path}: expected a folder holding train.tsv")):
        read_split_dir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        read_split_dir(tmp_path / "missing")
    write_file(tmp_path, "dev.tsv", "a\tO\n")
    write_file(tmp_path, "devel.tsv", "a\tO\n")
    with pytest.raises(ValueError, match=r"one file for the validation split, got \['devel.tsv', 'dev.tsv'\]"):
        read_split_dir(tmp_path)


def test_label_list_has_both_tags_of_every_type():
    sentences = [Sentence(["a", "b"], ["I-Gene", "O"], line=1), Sentence(["c"], ["B-Chemical"], line=3)]
    assert label_list_from(sentences) == ["O", "B-Chemical", "I-Chemical", "B-Gene", "I-Gene"]
    assert label_list_from([Sentence(["a"], ["O"], line=1)]) == ["O"]
    with pytest.raises(ValueError, match="line 4: expected labels"):
        label_list_from([Sentence(["a"], None, line=4)])


def test_entity_types():
    assert entity_types(["O", "B-Multi-tissue_structure", "I-Cell", "B-Cell"]) == ["Cell", "Multi-tissue_structure"]
    with pytest.raises(ValueError, match="E-Cell"):
        entity_types(["E-Cell"])


# ---------------------------------------------------------------------------------------------------------------------
# Hugging Face datasets (built locally, never the Hub)


@pytest.fixture
def hf_datasets(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    return datasets


def test_load_saved_dataset_dict_with_class_labels(tmp_path, hf_datasets):
    names = ["O", "B-Chemical", "I-Chemical"]
    features = hf_datasets.Features(
        {
            "tokens": hf_datasets.List(hf_datasets.Value("string")),
            "ner_tags": hf_datasets.List(hf_datasets.ClassLabel(names=names)),
        }
    )
    rows = {"tokens": [["Aspirin", "dose"], [], ["none"]], "ner_tags": [[1, 2], [], [0]]}
    split = hf_datasets.Dataset.from_dict(rows, features=features)
    hf_datasets.DatasetDict({"train": split, "validation": split}).save_to_disk(str(tmp_path / "saved"))

    sentences, label_names = load_hf_token_dataset(tmp_path / "saved", "validation")
    assert label_names == names
    # The empty row 2 is skipped; line numbers are 1-based row numbers.
    assert sentences == [
        Sentence(["Aspirin", "dose"], ["B-Chemical", "I-Chemical"], line=1),
        Sentence(["none"], ["O"], line=3),
    ]
    with pytest.raises(ValueError, match=r"expected a split among \['train', 'validation'\], got 'test'"):
        load_hf_token_dataset(tmp_path / "saved", "test")


def test_load_jsonl_with_string_tags_and_other_columns(tmp_path, hf_datasets):
    path = tmp_path / "corpus.jsonl"
    rows = [{"words": ["BRCA1", "gene"], "tags": ["B-Gene", "O"]}, {"words": ["x"], "tags": ["O"]}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")

    sentences, label_names = load_hf_token_dataset(path, "train", tokens_column="words", tags_column="tags")
    assert content_of(sentences) == [(["BRCA1", "gene"], ["B-Gene", "O"], False), (["x"], ["O"], False)]
    assert label_names == ["O", "B-Gene", "I-Gene"]
    missing_columns = r"corpus.jsonl.*expected columns 'tokens' and 'ner_tags'.*got columns \['words', 'tags'\]"
    with pytest.raises(ValueError, match=missing_columns):
        load_hf_token_dataset(path, "train")


def test_load_csv_and_bad_tags(tmp_path, hf_datasets):
    good = write_file(tmp_path, "good.csv", 'tokens,ner_tags\n"a b",O B-Species\n')
    sentences, _ = load_hf_token_dataset(good, "test")
    assert content_of(sentences) == [(["a", "b"], ["O", "B-Species"], False)]
    bad = write_file(tmp_path, "bad.csv", 'tokens,ner_tags\n"a b",O\n')
    with pytest.raises(ValueError, match="bad.csv.*row 0: expected one tag per token"):
        load_hf_token_dataset(bad, "test")
    iobes = write_file(tmp_path, "iobes.csv", "tokens,ner_tags\nc,O\nd,S-X\n")
    with pytest.raises(ValueError, match="iobes.csv.*row 1: .*IOB/IOB2 only.*got 'S-X'"):
        load_hf_token_dataset(iobes, "test")
    with pytest.raises(ValueError, match=r"expected a file ending in .json, .jsonl, .parquet, .csv, got '.tsv'"):
        load_hf_token_dataset(write_file(tmp_path, "x.tsv", "a\tO\n"), "train")


# ---------------------------------------------------------------------------------------------------------------------
# The shipped sample

SAMPLE_CORPORA = ["BC5CDR-chem", "BC5CDR-disease", "NCBI-disease", "BC2GM", "linnaeus"]
SAMPLE_SIZES = {"train": 400, "devel": 100, "test": 100}


def readme_counts(readme: Path) -> dict[tuple[str, str], list[int]]:
    """(corpus, split) -> the numbers of a README statistics table row."""
    counts = {}
    for line in readme.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) >= 4 and cells[1] in ("train", "devel", "test") and cells[2].isdigit():
            counts[cells[0], cells[1]] = [int(cell) for cell in cells[2:] if cell.isdigit()]
    return counts


def test_sample_has_stated_counts_and_attribution():
    folder = sample_data_dir()
    stated = readme_counts(folder / "README.md")
    assert set(stated) == {(corpus, split) for corpus in SAMPLE_CORPORA for split in SAMPLE_SIZES}
    for corpus in SAMPLE_CORPORA:
        splits = read_split_dir(folder / corpus)
        for split, size in SAMPLE_SIZES.items():
            sentences = splits["validation" if split == "devel" else split]  # the README names files: devel.tsv
            chunks = [extract_chunks(sentence.labels) for sentence in sentences]
            with_mention = sum(map(bool, chunks))
            counted = [len(sentences), sum(len(s.tokens) for s in sentences), sum(map(len, chunks)), with_mention]
            assert counted == stated[corpus, split], (corpus, split)
            assert len(sentences) == size and max(len(s.tokens) for s in sentences) <= 60
            assert with_mention == round(0.7 * size)
            assert (folder / corpus / f"{split}.tsv").read_text(encoding="utf-8") == canonical_text(sentences)
    readme = (folder / "README.md").read_text(encoding="utf-8")
    for required in (
        "CC BY 4.0",
        "Crichton",
        "cambridgeltl/MTL-Bioinformatics-2016",
        "Li et al. (2016)",
        "Doğan",
        "Smith et al. (2008)",
        "Gerner",
        "make_sample.py",
        "seed 2022",
    ):
        assert required in readme
    assert "creativecommons.org/licenses/by/4.0" in (folder / "LICENSE").read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------------------
# Real corpora


@pytest.mark.corpora
@pytest.mark.parametrize("corpus", ["NCBI-disease", "BioNLP13CG", "JNLPBA"])
def test_real_corpus_matches_shared_readme(bioner_dir, corpus):
    if not (bioner_dir / corpus).is_dir():
        pytest.skip(f"{corpus} not present in {bioner_dir}")
    stated = readme_counts(bioner_dir / "README.md")
    for split, sentences in read_split_dir(bioner_dir / corpus).items():
        # The README counts each -DOCSTART- line as a one-token sentence.
        markers = sum(sentence.starts_document for sentence in sentences)
        counted = [
            len(sentences) + markers,
            sum(len(sentence.tokens) for sentence in sentences) + markers,
            sum(len(extract_chunks(sentence.labels)) for sentence in sentences),
            max(len(sentence.tokens) for sentence in sentences),
        ]
        assert counted == stated[corpus, "devel" if split == "validation" else split], (corpus, split)
        assert (markers > 0) == (corpus == "JNLPBA")


@pytest.mark.corpora
def test_every_real_corpus_file_is_canonical(bioner_dir):
    files = sorted(bioner_dir.glob("*/*.tsv"))
    assert files, f"no <corpus>/*.tsv under {bioner_dir}"
    for path in files:
        # All shipped files are already canonical ("\n" line ends, a blank line after every sentence and marker),
        # so reading and writing gives back the very same bytes.
        assert canonical_text(read_conll(path)).encode("utf-8") == path.read_bytes(), path


@pytest.mark.corpora
def test_demo_abstract_is_the_bc5cdr_test_document_it_is_attributed_to(bioner_dir):
    """hstl/sample_data/README.md: abstract.txt, split and tokenized by text_hstl, gives back sentences 46-50 of
    BC5CDR-chem/test.tsv, token for token (so its attribution and licence are those of that corpus)."""
    from hstl.formats.text import iter_text_sentences

    corpus_file = bioner_dir / "BC5CDR-chem" / "test.tsv"
    if not corpus_file.is_file():
        pytest.skip(f"{corpus_file} not present")
    shipped = [sentence.words for sentence in iter_text_sentences(sample_data_dir() / "abstract.txt")]
    assert shipped == [sentence.tokens for sentence in read_conll(corpus_file)[45:50]]
    assert "abstract.txt" in (sample_data_dir() / "README.md").read_text(encoding="utf-8")


@pytest.mark.corpora
def test_sample_script_reproduces_shipped_sample(bioner_dir, tmp_path, monkeypatch):
    corpus = "NCBI-disease"
    if not (bioner_dir / corpus).is_dir():
        pytest.skip(f"{corpus} not present in {bioner_dir}")
    # In this process rather than a subprocess: importing hstl again would cost more than the sampling itself.
    spec = importlib.util.spec_from_file_location("make_sample", REPO_ROOT / "scripts" / "make_sample.py")
    make_sample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_sample)
    arguments = ["--source", str(bioner_dir), "--output", str(tmp_path), "--corpora", corpus]
    monkeypatch.setattr(sys, "argv", ["make_sample.py", *arguments])
    make_sample.main()
    for split in SAMPLE_SIZES:
        shipped = sample_data_dir() / corpus / f"{split}.tsv"
        assert (tmp_path / corpus / f"{split}.tsv").read_bytes() == shipped.read_bytes(), split
