"""A model folder straight out of train.py is a complete Hub repository: in a fresh process where hstl cannot be
imported, AutoConfig, AutoModel, AutoModelForTokenClassification, AutoTokenizer and pipeline("token-classification")
load it, with real label names, logits from a plain tokenizer's output, and the spans of predict.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import predict
from fresh_process import run_without_hstl
from test_evaluate_model import talkative_copy
from test_publish import _sample_text


MERGED_LABELS = ["O", "B-Chemical", "I-Chemical", "B-Disease", "I-Disease"]
"""The tiny model's heads: chem (BC5CDR-chem sample: Chemical), then disease (NCBI-disease sample: Disease)."""
WORDS = ["Cisplatin", "-", "induced", "nephrotoxicity", "and", "naloxone", "-", "induced", "hypertension", "."]

FRESH_SCRIPT = r'''
import json, sys
import torch
from transformers import AutoConfig, AutoModel, AutoModelForTokenClassification, AutoTokenizer, pipeline

text_file, words_file, *folders = sys.argv[1:]
text = open(text_file, encoding="utf-8").read()
words = json.load(open(words_file))
report = {}
for folder in folders:
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    model = AutoModel.from_pretrained(folder, trust_remote_code=True)
    classifier = AutoModelForTokenClassification.from_pretrained(folder, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)  # it reads config.json
    plain = tokenizer(" ".join(words), return_tensors="pt")
    split = tokenizer(words, is_split_into_words=True, return_tensors="pt")
    word_ids = torch.tensor([[-1 if index is None else index for index in split.word_ids()]])
    plain_output = classifier(**plain)
    split_output = classifier(**split, word_ids=word_ids)
    ner = pipeline("token-classification", model=folder, trust_remote_code=True)
    report[folder] = {
        "classes": [type(item).__module__ + "." + type(item).__name__
                    for item in (config, model, classifier, ner)] + [type(tokenizer).__name__],
        "config_id2label": config.id2label,
        "classifier_id2label": classifier.config.id2label,
        "plain_input_ids": plain["input_ids"].tolist(),
        "plain_attention_mask": plain["attention_mask"].tolist(),
        "plain_logits": plain_output.logits.tolist(),
        "plain_predictions": plain_output.predictions.tolist(),
        "split_input_ids": split["input_ids"].tolist(),
        "split_word_ids": word_ids.tolist(),
        "split_word_predictions": split_output.word_predictions.tolist(),
        "split_word_start_positions": split_output.word_start_positions.tolist(),
        "entities_confidence": ner(text),
        "entities_longest": ner(text, merge="longest"),
        "entities_none": ner(text, merge="none"),
        "entities_words": ner(text, merge="none", aggregation_strategy="none", tasks=["chem"]),
    }
print(json.dumps(report))
'''


@pytest.fixture(scope="module")
def talkative_train_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with loud heads (it predicts many mentions), written as train.py writes a model folder."""
    from hstl.remote_code import complete_model_folder

    folder = talkative_copy(tiny_model_dir, tmp_path_factory.mktemp("talkative_train"))
    complete_model_folder(folder)  # as hstl.checkpointing.save_model_folder does for train.py and finetune.py
    return folder


@pytest.fixture(scope="module")
def fresh(tiny_model_dir, talkative_train_dir, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("fresh_folder")
    (work / "text.txt").write_text(_sample_text(), encoding="utf-8")
    (work / "words.json").write_text(json.dumps(WORDS))
    report = run_without_hstl(FRESH_SCRIPT, [str(work / "text.txt"), str(work / "words.json"), str(tiny_model_dir),
                                             str(talkative_train_dir)], work)
    return {"train": report[str(tiny_model_dir)], "talkative": report[str(talkative_train_dir)]}


def _load_in_process(folder: Path):
    from hstl.inference.loading import load_model_and_tokenizer

    return load_model_and_tokenizer(folder)


def test_train_py_folder_holds_the_remote_code_auto_map_and_pipelines(tiny_model_dir):
    files = {path.name for path in tiny_model_dir.iterdir()}
    assert {"configuration_hstl.py", "entity_types_hstl.py", "labels_hstl.py", "mentions_hstl.py", "modeling_hstl.py",
            "pipeline_hstl.py", "text_hstl.py", "windows_hstl.py"} <= files
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "configuration_hstl.HSTLConfig", "AutoModel": "modeling_hstl.HSTLModel",
                                  "AutoModelForTokenClassification": "modeling_hstl.HSTLForTokenClassification"}
    assert set(config["custom_pipelines"]) == {"token-classification", "hstl-ner"}
    assert config["custom_pipelines"]["token-classification"]["pt"] == ["AutoModelForTokenClassification"]
    assert (config["window_max_length"], config["window_overlap"]) == (48, 8)  # the tiny run's training.max_length
    assert "auto_map" not in json.loads((tiny_model_dir / "tokenizer_config.json").read_text())


def test_every_auto_class_loads_the_folder_without_hstl(fresh):
    for report in fresh.values():
        config_class, model_class, classifier_class, pipeline_class, tokenizer_class = report["classes"]
        assert config_class.startswith("transformers_modules.") and config_class.endswith(".HSTLConfig")
        assert model_class.startswith("transformers_modules.") and model_class.endswith(".HSTLModel")
        assert classifier_class.endswith("modeling_hstl.HSTLForTokenClassification")
        assert pipeline_class.endswith("pipeline_hstl.HSTLNERPipeline")
        assert tokenizer_class == "XLNetTokenizer"


def test_id2label_names_the_merged_labels(fresh):
    expected = {str(index): label for index, label in enumerate(MERGED_LABELS)}
    assert fresh["train"]["config_id2label"] == expected
    assert fresh["train"]["classifier_id2label"] == expected


def test_logits_of_a_plain_tokenizer_output_are_the_heads_log_probabilities(fresh, talkative_train_dir):
    # Every attended sub-token is a word: recompute the merged scores from HSTLModel.tag, head by head.
    report = fresh["talkative"]
    model, _ = _load_in_process(talkative_train_dir)
    input_ids = torch.tensor(report["plain_input_ids"])
    seq_len = input_ids.shape[1]
    tagged = model.tag(input_ids, torch.arange(seq_len).unsqueeze(0), torch.tensor(report["plain_attention_mask"]))
    expected = torch.full((1, seq_len, len(MERGED_LABELS)), float("-inf"))
    for name, emissions in tagged.emissions.items():
        for head_index, label in enumerate(model.config.task(name)["labels"]):
            merged_index = MERGED_LABELS.index(label)
            expected[..., merged_index] = torch.maximum(expected[..., merged_index],
                                                        emissions.log_softmax(-1)[..., head_index])
    logits = torch.tensor(report["plain_logits"])
    assert logits.shape == (1, seq_len, len(MERGED_LABELS))
    torch.testing.assert_close(logits, expected)
    predictions = report["plain_predictions"][0]
    assert len(predictions) == seq_len and all(0 <= label < len(MERGED_LABELS) for label in predictions)


def test_word_ids_read_each_word_at_its_first_subtoken_and_predict_like_predict_py(fresh, talkative_train_dir):
    from hstl.inference.merging import merge_mentions, mentions_to_labels
    from hstl.inference.tagging import tag_sentences_with_marginals

    report = fresh["talkative"]
    word_ids = report["split_word_ids"][0]
    first_subtokens = [word_ids.index(word) for word in range(len(WORDS))]
    assert report["split_word_start_positions"][0] == first_subtokens
    assert len(first_subtokens) < len(word_ids)  # special tokens and continuation sub-tokens exist to be skipped
    model, tokenizer = _load_in_process(talkative_train_dir)
    tagged = tag_sentences_with_marginals(model, tokenizer, [WORDS])
    labels_by_task = {name: labels[0] for name, labels in tagged.labels.items()}
    scores_by_task = {name: marginals[0] for name, marginals in tagged.marginals.items()}
    expected = mentions_to_labels(merge_mentions(labels_by_task, "confidence", scores_by_task), len(WORDS))
    assert [MERGED_LABELS[label] for label in report["split_word_predictions"][0]] == expected
    assert any(label != "O" for label in expected)


def _predict_py_entities(folder: Path, tmp_path: Path, merge: str) -> tuple[list[tuple], list[float]]:
    """predict.py's JSONL entities of the sample text: (task, type, start, end, text) and the scores."""
    (tmp_path / "input.txt").write_text(_sample_text(), encoding="utf-8")
    output = tmp_path / f"out-{merge}.jsonl"
    assert predict.main(["--model", str(folder), "--input", str(tmp_path / "input.txt"), "--output", str(output),
                         "--merge", merge, "--cpu"]) == 0
    entities = [entity for line in output.read_text().splitlines() for entity in json.loads(line)["entities"]]
    return ([(entity["task"], entity["type"], entity["start"], entity["end"], entity["text"]) for entity in entities],
            [entity["score"] for entity in entities])


@pytest.mark.parametrize("merge", ["confidence", "longest", "none"])
def test_pipeline_spans_and_scores_equal_predict_py(fresh, talkative_train_dir, tiny_model_dir, tmp_path, merge):
    for name, folder in (("talkative", talkative_train_dir), ("train", tiny_model_dir)):
        entities = fresh[name][f"entities_{merge}"]
        found = [(entity["task"], entity["entity_group"], entity["start"], entity["end"], entity["word"])
                 for entity in entities]
        spans, scores = _predict_py_entities(folder, tmp_path, merge)
        assert found == spans, name
        assert [entity["score"] for entity in entities] == pytest.approx(scores, abs=1e-4, rel=0), name
        assert all(round(score, 4) == score for score in scores)  # files hold 4 decimals
        assert all(0.0 <= entity["score"] <= 1.0 for entity in entities)
    assert len(fresh["talkative"][f"entities_{merge}"]) > 10


def test_merge_by_confidence_resolves_overlaps_otherwise_than_by_length(fresh):
    """The talkative heads overlap a lot: the two policies keep different mentions, each without overlaps, and no
    mention that "confidence" dropped is surer than every kept mention it overlaps."""
    by_confidence, by_length = fresh["talkative"]["entities_confidence"], fresh["talkative"]["entities_longest"]
    assert by_confidence != by_length
    every = fresh["talkative"]["entities_none"]
    key = lambda entity: (entity["task"], entity["start"], entity["end"])  # noqa: E731
    kept = {key(entity) for entity in by_confidence}
    for entity in every:
        overlapping = [other for other in by_confidence
                       if other["start"] < entity["end"] and entity["start"] < other["end"]]
        if key(entity) in kept:
            assert overlapping == [entity]
        else:
            assert overlapping and max(other["score"] for other in overlapping) >= entity["score"]


def test_pipeline_scores_equal_the_in_process_pipeline(fresh, talkative_train_dir):
    from transformers import pipeline

    import pipeline_hstl  # noqa: F401  (registers "hstl-ner" in this process)

    model, tokenizer = _load_in_process(talkative_train_dir)
    ner = pipeline("hstl-ner", model=model, tokenizer=tokenizer, device="cpu")
    expected = ner(_sample_text(), merge="none")
    remote = fresh["talkative"]["entities_none"]
    assert [{**entity, "score": None} for entity in remote] == [{**entity, "score": None} for entity in expected]
    assert [entity["score"] for entity in remote] == pytest.approx([entity["score"] for entity in expected])


def test_pipeline_word_level_aggregation_lists_each_word_of_each_mention(fresh):
    text = _sample_text()
    words = fresh["talkative"]["entities_words"]
    spans = [entity for entity in fresh["talkative"]["entities_none"] if entity["task"] == "chem"]
    assert words and all(entity["task"] == "chem" for entity in words)
    assert [entity["entity"] for entity in words].count("B-Chemical") == len(spans)
    for entity in words:
        assert entity["word"] == text[entity["start"]:entity["end"]]
        assert any(span["start"] <= entity["start"] < entity["end"] <= span["end"] for span in spans)


def test_pipeline_word_scores_are_the_crf_marginals_of_their_labels(fresh, talkative_train_dir):
    """aggregation_strategy="none": each word's score is the marginal of its IOB2 label under its head, as
    predict.py's tagging computes it (the same windows: the folder's window settings)."""
    from hstl.inference.loading import window_settings
    from hstl.inference.tagging import tag_sentences_with_marginals
    from text_hstl import split_sentences, tokenize

    text = _sample_text()
    sentences = [tokenize(text[start:end], start) for start, end in split_sentences(text)]
    model, tokenizer = _load_in_process(talkative_train_dir)
    tagged = tag_sentences_with_marginals(model, tokenizer, [[word for word, _, _ in words] for words in sentences],
                                          ["chem"], settings=window_settings(talkative_train_dir))
    marginal_at = {(start, end): (label, marginals)
                   for words, sentence_labels, sentence_marginals
                   in zip(sentences, tagged.labels["chem"], tagged.marginals["chem"])
                   for (_, start, end), label, marginals in zip(words, sentence_labels, sentence_marginals)}
    words = fresh["talkative"]["entities_words"]
    for entity in words:
        label, marginals = marginal_at[(entity["start"], entity["end"])]
        assert label.split("-", 1)[1] == entity["entity"].split("-", 1)[1]
        assert entity["score"] == pytest.approx(marginals[label], abs=1e-5)
    assert len({round(entity["score"], 3) for entity in words}) > 3  # scores that vary, not a constant
