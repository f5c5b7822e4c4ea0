"""Sentence splitting and word tokenization of plain text (`text_hstl`): examples, the corpora's own tokenization, and
properties under arbitrary Unicode."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hstl.data import read_conll, sample_data_dir
from text_hstl import is_blank, split_sentences, tokenize


def words(text: str) -> list[str]:
    return [token for token, _, _ in tokenize(text)]


def sentences(text: str) -> list[str]:
    return [text[start:end] for start, end in split_sentences(text)]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("IL-2", ["IL", "-", "2"]),
        ("5-fluorouracil", ["5", "-", "fluorouracil"]),
        ("C/EBP and/or NF-kappaB", ["C", "/", "EBP", "and", "/", "or", "NF", "-", "kappaB"]),
        ("0.05 mg", ["0", ".", "05", "mg"]),
        ("Crohn's disease", ["Crohn", "'", "s", "disease"]),
        ("(Smith et al., 2003)", ["(", "Smith", "et", "al", ".", ",", "2003", ")"]),
        ("CD4+ Ca2+", ["CD4", "+", "Ca2", "+"]),
        ("x_y", ["x", "_", "y"]),
        ("TNF-\u03b1 \u00e9t\u00e9 e\u0301te\u0301", ["TNF", "-", "\u03b1", "\u00e9t\u00e9", "e\u0301te\u0301"]),
        ("a\u200bb \x07", ["a", "\u200b", "b"]),
        ("HBV\x00hepatitis \x00 B\x1f\x7f\x85C", ["HBV", "hepatitis", "B", "C"]),  # control characters are blank
        ("", []),
        (" \t\n ", []),
    ],
)
def test_tokenize_splits_like_the_corpora(text, expected):
    assert words(text) == expected


def test_tokenize_offsets_are_shifted_by_start():
    assert tokenize("IL-2 x", start=100) == [("IL", 100, 102), ("-", 102, 103), ("2", 103, 104), ("x", 105, 106)]


def test_shipped_sample_tokenization_is_reproduced():
    """The sample corpora (from BC5CDR, NCBI-disease, BC2GM, linnaeus) re-tokenize to their own tokens."""
    for corpus in ("BC5CDR-chem", "NCBI-disease", "BC2GM"):
        for sentence in read_conll(sample_data_dir() / corpus / "devel.tsv"):
            assert words(" ".join(sentence.tokens)) == sentence.tokens, (corpus, sentence.line)


@pytest.mark.corpora
def test_corpora_tokenization_is_reproduced(bioner_dir):
    """Every corpus but JNLPBA (GENIA tokenization keeps "IL-2" whole; see text_hstl.py) splits text as we do."""
    for corpus_dir in sorted(path for path in bioner_dir.iterdir() if (path / "devel.tsv").is_file()):
        if corpus_dir.name == "JNLPBA":
            continue
        corpus = read_conll(corpus_dir / "devel.tsv")
        differing = [sentence for sentence in corpus if words(" ".join(sentence.tokens)) != sentence.tokens]
        # linnaeus keeps a few symbols such as "(R)", "+/-", ">=" as single tokens (34 of 4078 devel sentences).
        assert len(differing) <= 0.01 * len(corpus), (corpus_dir.name, " ".join(differing[0].tokens))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("BRCA1 was mutated. The IL-2 level rose! Was it? 3 patients died. (See below.) Done.",
         ["BRCA1 was mutated.", "The IL-2 level rose!", "Was it?", "3 patients died.", "(See below.)", "Done."]),
        ("Found in E. coli and S. cerevisiae. Next one.", ["Found in E. coli and S. cerevisiae.", "Next one."]),
        ("Drugs, e.g. Aspirin, i.e. ASA, vs. Placebo (Smith et al. 2003, Fig. 2) worked.",
         ["Drugs, e.g. Aspirin, i.e. ASA, vs. Placebo (Smith et al. 2003, Fig. 2) worked."]),
        ("Dr. Smith used approx. 5 mg in the U.S. Food trial.",
         ["Dr. Smith used approx. 5 mg in the U.S. Food trial."]),
        ("See no. 5 here. The answer was no. The end.", ["See no. 5 here.", "The answer was no.", "The end."]),
        ("It said \"stop.\" Then it went.", ["It said \"stop.\"", "Then it went."]),
        ("lower case follows. and stays. 0.05 is a number.", ["lower case follows. and stays.", "0.05 is a number."]),
        ("A hard-wrapped\nsentence goes on.\n\nA new paragraph\nstarts here", ["A hard-wrapped\nsentence goes on.",
                                                                            "A new paragraph\nstarts here"]),
        ("no final stop", ["no final stop"]),
        ("   ", []),
        # A single capital after a lowercase word, or before a sentence starter, names something and ends a sentence.
        ("Given vitamin C. The rats died.", ["Given vitamin C.", "The rats died."]),
        ("Low in gene A. Expression rose.", ["Low in gene A.", "Expression rose."]),
        ("J. Smith found hepatitis B. In mice, E. coli grew.", ["J. Smith found hepatitis B.", "In mice, E. coli grew."]),
        # Dotted initials and known abbreviations end a sentence before a sentence starter only.
        ("Most cases were in the U.S. The study ended.", ["Most cases were in the U.S.", "The study ended."]),
        ("As Smith et al. The data agree.", ["As Smith et al.", "The data agree."]),
        ("Dr. The Smith and Prof. In Lee met.", ["Dr. The Smith and Prof. In Lee met."]),  # titles: names follow
        # A missing space after the full stop.
        ("Rats got 5 mg/kg.The rats died.", ["Rats got 5 mg/kg.", "The rats died."]),
        ("It rose (10 mg/kg).Then 0.5.Next e.g.Aspirin", ["It rose (10 mg/kg).", "Then 0.5.", "Next e.g.Aspirin"]),
        ("In the U.S.Food trial and E.Coli.", ["In the U.S.Food trial and E.Coli."]),
        (".Dr. 0", [".Dr.", "0"]),  # a period that starts the text ends no sentence
        ("0.Dr. 0", ["0.", "Dr. 0"]),  # a title after a glued sentence end is still a title
        # A period after a comparison sign is a spaced-off decimal point.
        ("Risk fell (P <. 001). Rats (P =. 03) and mice (P \u2264. 05) died.",
         ["Risk fell (P <. 001).", "Rats (P =. 03) and mice (P \u2264. 05) died."]),
    ],
)
def test_split_sentences_examples(text, expected):
    assert sentences(text) == expected


# Arbitrary Unicode (controls, zero-width and combining characters, astral planes), and text dense in what the
# splitter looks at: sentence ends, abbreviations, brackets, quotes, capitals, digits, line breaks.
SPLITTER_PIECES = st.sampled_from(list("aZ9 .!?\n\t()\"'-\u200b\x07\u0301E") + ["e.g.", "et al.", " Fig. ", "\n\n",
                                                                              "The", "Dr.", "U.S.", "Th", "In"])
TEXT = st.one_of(st.text(alphabet=st.characters(codec="utf-8"), max_size=200),
                st.lists(SPLITTER_PIECES, max_size=60).map("".join))


@settings(max_examples=300, deadline=None)
@given(text=TEXT, start=st.integers(0, 10_000))
def test_tokens_cover_every_non_space_character_once(text, start):
    tokens = tokenize(text, start)
    covered = []
    previous_end = start
    for token, token_start, token_end in tokens:
        assert token and text[token_start - start : token_end - start] == token
        assert previous_end <= token_start < token_end  # in order, non-overlapping
        previous_end = token_end
        covered.extend(range(token_start - start, token_end - start))
    assert covered == [index for index, character in enumerate(text) if not is_blank(character)]


COMBINING_RANGES = [("\u0300", "\u036f"), ("\u1ab0", "\u1aff"), ("\u1dc0", "\u1dff"), ("\u20d0", "\u20ff"),
                    ("\ufe20", "\ufe2f")]


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(TEXT, st.lists(st.sampled_from(list("a9_\u00e9\u0301\u0308\u20d0\ufe20 -.\x07\u00bd")),
                                     max_size=30).map("".join)))
@example(text="\u0301e\u0301_x\u20d0\u00bd9 -\ufe20")
def test_tokens_are_maximal_runs_of_letters_digits_and_diacritics_or_single_characters(text):
    """Each token is a maximal run of characters that are letters or digits (`str.isalnum`) or combining
    diacritics, or one other character that is not blank."""
    def in_word(character: str) -> bool:
        return character.isalnum() or any(low <= character <= high for low, high in COMBINING_RANGES)

    expected, position = [], 0
    while position < len(text):
        end = position + 1
        if in_word(text[position]):
            while end < len(text) and in_word(text[end]):
                end += 1
        if not is_blank(text[position]):
            expected.append((text[position:end], position, end))
        position = end
    assert tokenize(text) == expected
    assert tokenize(text, 7) == [(token, start + 7, end + 7) for token, start, end in expected]


@settings(max_examples=300, deadline=None)
@given(text=TEXT)
def test_sentences_cover_every_non_space_character_once(text):
    spans = split_sentences(text)
    covered = []
    for start, end in spans:
        assert start < end and not is_blank(text[start]) and not is_blank(text[end - 1])
        assert not covered or covered[-1] < start
        covered.extend(range(start, end))
    assert [index for index in covered if not is_blank(text[index])] == [
        index for index, character in enumerate(text) if not is_blank(character)
    ]


@settings(max_examples=200, deadline=None)
@given(text=TEXT)
@example(text="\x08A. 0")  # a control character before an initial separates words as a space does
def test_splitting_from_any_sentence_start_gives_the_same_later_sentences(text):
    """What lets `hstl.formats.text.iter_text_sentences` split a long stream piece by piece."""
    spans = split_sentences(text)
    for index, (start, _) in enumerate(spans):
        later = [(span_start + start, span_end + start) for span_start, span_end in split_sentences(text[start:])]
        assert later == spans[index:]


def test_control_characters_are_blank_with_offsets_kept():
    """A NUL between words separates them as a space does, never starts or ends a sentence, and counts in offsets."""
    text = "\x00Patients with\x00hepatitis died.\x07 The\x00\x00rats died.\x00"
    assert sentences(text) == ["Patients with\x00hepatitis died.", "The\x00\x00rats died."]
    assert tokenize(text)[:3] == [("Patients", 1, 9), ("with", 10, 14), ("hepatitis", 15, 24)]
    assert [is_blank(character) for character in "\x00\x1f\x7f\x9f \u00a0a\u200b\u00ad"] == \
           [True, True, True, True, True, True, False, False, False]


def test_only_lines_of_ascii_spaces_and_tabs_are_paragraph_breaks():
    # A paragraph break ends a sentence even without a period; a line holding U+3000 or U+00A0 is text, as in every
    # reader of hstl.formats (their separator rule), so it does not.
    assert [text for text in map(lambda span: "in mice\n \t\nand rats"[span[0]:span[1]],
                                 split_sentences("in mice\n \t\nand rats"))] == ["in mice", "and rats"]
    for blank in ("\u3000", "\u00a0", "\u2009"):
        text = f"in mice\n{blank}\nand rats"
        assert split_sentences(text) == [(0, len(text))], repr(blank)
