"""Gold running text (`hstl.formats.gold_text`) and the text-in / CoNLL-in comparison (`hstl.evaluation`): the
detokenizer, the PubTator gold reader, sentence alignment, boundary counts, and on the NCBI disease test split the
splitter's recovery of the corpus's sentence boundaries."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hstl.data import Sentence, read_conll, sample_data_dir
from hstl.errors import CorpusFormatError
from hstl.evaluation import boundary_agreement, compare_text_and_conll, score_spans
from hstl.formats.gold_text import (
    GoldPassage, align_sentence_starts, detokenize, documents_from_conll, read_pubtator_gold,
)
from text_hstl import tokenize


@pytest.mark.parametrize("tokens, expected", [
    (["Ataxia", "-", "telangiectasia", "(", "A", "-", "T", ")", "is", "a", "multi", "-", "system", "disorder", ",",
      "see", "Fig", ".", "2", "and", "ref", ".", "3", "."],
     "Ataxia-telangiectasia (A-T) is a multi-system disorder, see Fig. 2 and ref. 3."),
    (["P", "<", ".", "0001", ";", "0", ".", "05", "mg", "/", "kg", "i", ".", "e", ".", ",", "CD4", "+", "cells", "5",
      "%", "Crohn", "'", "s", "q11", ".", "2"],
     "P <.0001; 0.05 mg/kg i.e., CD4+ cells 5% Crohn's q11.2"),
])
def test_detokenize_spaces_tokens_as_edited_text_and_gives_their_spans(tokens, expected):
    text, spans = detokenize(tokens)
    assert text == expected
    assert [text[start:end] for start, end in spans] == tokens
    assert [token for token, _, _ in tokenize(text)] == tokens


def sentence(tokens: str, labels: str, line: int) -> Sentence:
    return Sentence(tokens.split(), labels.split(), line)


def test_documents_from_conll_groups_sentences_and_ends_a_document_after_one_without_final_punctuation():
    sentences = [
        sentence("Ataxia - telangiectasia ( A - T ) is rare .", "B-Disease I-Disease I-Disease O B-Disease "
                 "I-Disease I-Disease O O O O", 1),
        sentence("Cancer genes", "B-Disease O", 13),
        sentence("See Fig . 2 .", "O O O O O", 16),
        sentence("P < . 05 for CF .", "O O O O O B-Disease O", 22),
    ]
    first, second = documents_from_conll(sentences, "x.tsv", sentences_per_document=3)
    assert (first.name, first.line, first.sentence_starts) == ("x.tsv:1-2", 1, [0, 37])
    assert first.passages == [GoldPassage("Ataxia-telangiectasia (A-T) is rare. Cancer genes", 0)]
    assert first.mentions == [(0, 21, "Disease"), (23, 26, "Disease"), (37, 43, "Disease")]
    assert (second.name, second.line, second.sentence_starts) == ("x.tsv:3-4", 16, [0, 12])
    assert second.passages == [GoldPassage("See Fig. 2. P <.05 for CF.", 0)]
    assert second.mentions == [(23, 25, "Disease")]


PUBTATOR = (
    "111|t|Cystic fibrosis in mice.\n"
    "111|a|CF mice died. The CFTR gene was mutated in 5 mg/kg.Treated rats.\n"
    "111\t0\t15\tCystic fibrosis\tSpecificDisease\tD003550\n"
    "111\t25\t27\tCF\tSpecificDisease\tD003550\n"
    "111\tCID\tD1\tD2\n"
    "\n"
    "222|t|No disease here\n"
    "222|a|Colon cancer rose.\n"
    "222\t16\t28\tColon cancer\tDiseaseClass\tD015179\n"
)
CORPUS_OF_PUBTATOR = [  # the same text as CoNLL sentences, documents in the other order
    sentence("No disease here", "O O O", 1),
    sentence("Colon cancer rose .", "B-Disease I-Disease O O", 5),
    sentence("Cystic fibrosis in mice .", "B-Disease I-Disease O O O", 10),
    sentence("CF mice died .", "B-Disease O O O", 16),
    sentence("The CFTR gene was mutated in 5 mg / kg . Treated rats .", " ".join(["O"] * 14), 21),
]


def test_read_pubtator_gold_reads_passages_and_mentions_and_skips_relations(tmp_path):
    path = tmp_path / "gold.pubtator"
    path.write_text(PUBTATOR, encoding="utf-8")
    first, second = read_pubtator_gold(path)
    assert (first.name, first.line, first.sentence_starts) == ("111", 1, None)
    assert first.passages == [GoldPassage("Cystic fibrosis in mice.", 0),
                              GoldPassage("CF mice died. The CFTR gene was mutated in 5 mg/kg.Treated rats.", 25)]
    assert first.mentions == [(0, 15, "SpecificDisease"), (25, 27, "SpecificDisease")]
    assert first.mention_lines == [3, 4]
    assert (second.name, second.line, second.mentions, second.mention_lines) == \
        ("222", 7, [(16, 28, "DiseaseClass")], [9])
    assert second.passages == [GoldPassage("No disease here", 0), GoldPassage("Colon cancer rose.", 16)]


def test_read_pubtator_gold_refuses_a_mention_its_offsets_do_not_hold(tmp_path):
    path = tmp_path / "gold.pubtator"
    path.write_text(PUBTATOR.replace("0\t15\tCystic fibrosis", "0\t15\tCystic fibrosus"), encoding="utf-8")
    with pytest.raises(CorpusFormatError, match=r"gold.pubtator:3: expected the mention text 'Cystic fibrosus' at "
                                                r"characters 0-15 of the document, got 'Cystic fibrosis'"):
        read_pubtator_gold(path)


def test_sentence_starts_are_aligned_from_the_corpus_and_boundaries_counted(tmp_path):
    path = tmp_path / "gold.pubtator"
    path.write_text(PUBTATOR, encoding="utf-8")
    documents = read_pubtator_gold(path)
    assert align_sentence_starts(documents, CORPUS_OF_PUBTATOR[2:]) == 1  # document 222 is not in these
    assert [document.sentence_starts for document in documents] == [[0, 25, 39], None]
    assert align_sentence_starts(documents, CORPUS_OF_PUBTATOR) == 2
    assert [document.sentence_starts for document in documents] == [[0, 25, 39], [0, 16]]
    # The splitter finds "The" (39) and also cuts at "kg.Treated" (76), where the corpus did not.
    agreement = boundary_agreement(documents)
    assert documents[0].passages[1].text[76 - 25 :].startswith("Treated rats")
    assert {key: agreement[key] for key in ("gold", "found", "missed", "added", "missed_at", "added_at")} == \
        {"gold": 1, "found": 1, "missed": 0, "added": 1, "missed_at": [], "added_at": [("111", 76)]}


def test_score_spans_counts_exact_matches_only():
    gold = {("d", 0, 5), ("d", 10, 12), ("e", 0, 5)}
    assert score_spans(gold, {("d", 0, 5), ("d", 10, 13)}) == {
        "precision": 0.5, "recall": 1 / 3, "f1": 0.4, "num_gold": 3, "num_pred": 2, "num_correct": 1}


@pytest.fixture(scope="module")
def labelled_by_tiny_model(tmp_path_factory):
    """A random tiny model and 40 sample sentences labelled by it: `(model folder, corpus folder, sentences)`, the
    corpus folder holding them as test.tsv. With the model's own labels as gold, CoNLL-in F1 is 1.0."""
    import torch

    from configuration_hstl import HSTLConfig
    from hstl.data import write_conll
    from hstl.inference.loading import load_model_and_tokenizer, window_settings
    from hstl.inference.tagging import tag_sentences
    from hstl.tokenization import train_xlnet_tokenizer
    from modeling_hstl import HSTLModel

    folder = tmp_path_factory.mktemp("labelled")
    model_dir, corpus_dir = folder / "model", folder / "corpus"
    corpus = read_conll(sample_data_dir() / "NCBI-disease" / "test.tsv")[:40]
    tokenizer = train_xlnet_tokenizer([sentence.tokens for sentence in corpus], model_dir, vocab_size=300, seed=0)
    torch.manual_seed(3)
    encoder = {"model_type": "xlnet", "d_model": 32, "n_layer": 1, "n_head": 2, "d_inner": 64,
               "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
    tasks = [{"name": "disease", "labels": ["O", "B-Disease", "I-Disease"], "family": "disease"}]
    HSTLModel(HSTLConfig(encoder_config=encoder, tasks=tasks)).save_pretrained(model_dir)
    model, tokenizer = load_model_and_tokenizer(model_dir)
    labels = tag_sentences(model, tokenizer, [sentence.tokens for sentence in corpus],
                           settings=window_settings(model_dir, None, None, None))["disease"]
    sentences = [Sentence(sentence.tokens, sentence_labels, sentence.line)
                 for sentence, sentence_labels in zip(corpus, labels)]
    corpus_dir.mkdir()
    write_conll(corpus_dir / "test.tsv", sentences)
    return model_dir, corpus_dir, read_conll(corpus_dir / "test.tsv")


def test_text_in_finds_the_mentions_that_conll_in_finds_when_the_text_splits_into_the_corpus_sentences(
        labelled_by_tiny_model, tmp_path):
    """Each sentence is its own document, so text-in tags exactly the corpus's sentences: it must find every mention
    the model finds in them, at its character span (F1 1.0, as CoNLL-in by construction)."""
    from hstl.inference.streaming import PredictionOptions

    model_dir, _, sentences = labelled_by_tiny_model
    documents = documents_from_conll(sentences, "test.tsv", sentences_per_document=1)
    result = compare_text_and_conll(model_dir, documents, sentences, "disease", tmp_path / "work",
                                    options=PredictionOptions(num_workers=0))
    assert result["boundaries"]["added"] == 0  # no sentence is cut in two: text-in sees the corpus's sentences
    assert result["conll_in"]["num_gold"] >= 10 and result["conll_in"]["f1"] == 1.0
    assert result["text_in"] == {key: result["conll_in"][key] for key in result["text_in"]}
    assert result["difference"] == 0.0 and result["within_limit"]


def test_text_vs_conll_command_exits_1_when_text_in_falls_more_than_a_point_behind(labelled_by_tiny_model, tmp_path,
                                                                                    capsys):
    from hstl.commands.text_vs_conll import main

    model_dir, corpus_dir, _ = labelled_by_tiny_model
    arguments = ["--model", str(model_dir), "--corpus", str(corpus_dir), "--head", "disease"]
    assert main(arguments + ["--sentences_per_document", "1", "--output_dir", str(tmp_path / "out")]) == 0
    shown = capsys.readouterr().out
    assert "difference (text-in - CoNLL-in): +0.00 points" in shown and "OK: text-in F1 is within" in shown
    assert (tmp_path / "out" / "text_vs_conll.json").is_file()
    pubtator = tmp_path / "unannotated.pubtator"  # running text without gold mentions: text-in F1 0
    pubtator.write_text("1|t|Cancer genes.\n1|a|Tumours grew in mice.\n", encoding="utf-8")
    assert main(arguments + ["--pubtator", str(pubtator)]) == 1
    shown = capsys.readouterr().out
    assert "difference (text-in - CoNLL-in): -100.00 points" in shown
    assert "FAILED: text-in F1 differs from CoNLL-in F1 by more than 1.0 point" in shown


@pytest.mark.corpora
def test_ncbi_test_split_as_text_splits_into_the_corpus_sentences_and_words(bioner_dir):
    """The NCBI disease test split rebuilt as text (99 pseudo-abstracts): the splitter finds 836 of its 841
    sentence boundaries inside them and adds none. The 5 misses: "man. I. Clinical" (a title's part number),
    "J. B." then a sentence twice (initials the corpus itself cut as sentences), and two sentences that start in
    lower case ("von Willebrand", "vWf-deficient"). 99% leaves room for those and fails when a class of
    boundaries is lost (the 47 sentences starting with a digit, or "kg.The" glued ends, are each more than 1%)."""
    sentences = read_conll(Path(bioner_dir) / "NCBI-disease" / "test.tsv")
    documents = documents_from_conll(sentences, "test.tsv")
    agreement = boundary_agreement(documents)
    assert agreement["found"] >= 0.99 * agreement["gold"], agreement["missed_at"]
    assert agreement["added"] <= 0.005 * agreement["gold"], agreement["added_at"]
    off_word_boundaries = []
    for document in documents:
        text = document.passages[0].text
        words = tokenize(text)
        starts, ends = {start for _, start, _ in words}, {end for _, _, end in words}
        off_word_boundaries += [(document.name, text[start:end]) for start, end, _ in document.mentions
                                if start not in starts or end not in ends]
    assert sum(len(document.mentions) for document in documents) == 960
    assert off_word_boundaries == []


def ncbi_pubtator_test_set(bioner_dir: Path) -> Path:
    """The NCBI disease corpus's PubTator test file: `HSTL_NCBI_PUBTATOR`, else `NCBI-disease/NCBItestset_corpus.txt`
    in the corpora folder; skips the test when neither exists (the corpora folder holds only the CoNLL splits)."""
    configured = os.environ.get("HSTL_NCBI_PUBTATOR")
    path = Path(configured) if configured else Path(bioner_dir) / "NCBI-disease" / "NCBItestset_corpus.txt"
    if not path.is_file():
        pytest.skip(f"NCBI disease PubTator test set not found at {path} (set HSTL_NCBI_PUBTATOR)")
    return path


@pytest.mark.corpora
def test_ncbi_pubtator_test_set_aligns_with_the_conll_split_and_the_splitter_finds_its_boundaries(bioner_dir):
    """The release's 100 abstracts and 960 mentions; every abstract spells consecutive test.tsv sentences. Measured:
    736 of 740 corpus boundaries found (the 4 misses: "J. B." twice, "man. I.", a sentence starting "vWf-"), 30 added
    (decimals written "0. 08" inside parentheses, which the corpus's splitter kept whole): the bounds, 99% found and 5%
    added, hold those and fail when a class of boundaries is lost (sentences starting with a digit are 1.4%)."""
    documents = read_pubtator_gold(ncbi_pubtator_test_set(bioner_dir))
    assert (len(documents), sum(len(document.mentions) for document in documents)) == (100, 960)
    assert align_sentence_starts(documents, read_conll(Path(bioner_dir) / "NCBI-disease" / "test.tsv")) == 100
    agreement = boundary_agreement(documents)
    assert agreement["found"] >= 0.99 * agreement["gold"], agreement["missed_at"]
    assert agreement["added"] <= 0.05 * agreement["gold"], agreement["added_at"]
