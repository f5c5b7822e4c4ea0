"""The `evaluate` metric eval/metrics/hstl_ner: it loads offline where hstl is not importable, returns seqeval's keys,
and its numbers equal seqeval's default mode and hstl.scoring on random label sequences."""

from __future__ import annotations

import json
import random
import socket
from pathlib import Path

import pytest
from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities

from fresh_process import run_without_hstl
from hstl.scoring import score_sentences

METRIC_DIR = Path(__file__).resolve().parents[1] / "eval" / "metrics" / "hstl_ner"
LABELS = ["O", "O", "O", "B-X", "I-X", "B-Y", "I-Y", "B-Multi-word", "I-Multi-word"]


def random_cases(seed: str, count: int) -> list[tuple[list[list[str]], list[list[str]]]]:
    """`(references, predictions)` pairs of random IOB2 sequences, ill-formed ones (I- after O) included."""
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        lengths = [rng.randint(0, 9) for _ in range(rng.randint(1, 6))]
        gold = [[rng.choice(LABELS) for _ in range(length)] for length in lengths]
        pred = [[rng.choice(LABELS) for _ in range(length)] for length in lengths]
        cases.append((gold, pred))
    return cases


def seqeval_default_mode(gold: list[list[str]], pred: list[list[str]]) -> dict:
    """What the metric should return, from seqeval's scoring functions (default mode) and its chunker."""
    gold_types = [entity_type for labels in gold for entity_type, _, _ in get_entities(labels)]
    pred_types = [entity_type for labels in pred for entity_type, _, _ in get_entities(labels)]
    expected = {}
    for entity_type in set(gold_types) | set(pred_types):
        only = [[[label if label.endswith(f"-{entity_type}") else "O" for label in labels] for labels in sentences]
                for sentences in (gold, pred)]
        expected[entity_type] = {
            "precision": precision_score(*only, zero_division=0), "recall": recall_score(*only, zero_division=0),
            "f1": f1_score(*only, zero_division=0), "number": gold_types.count(entity_type),
        }
    expected["overall_precision"] = precision_score(gold, pred, zero_division=0)
    expected["overall_recall"] = recall_score(gold, pred, zero_division=0)
    expected["overall_f1"] = f1_score(gold, pred, zero_division=0)
    num_tokens = sum(map(len, gold))
    expected["overall_accuracy"] = accuracy_score(gold, pred) if num_tokens else 0.0
    return expected


def _refuse_connection(*args: object, **kwargs: object) -> None:
    raise OSError("network access attempted while loading the metric")


@pytest.fixture(scope="module")
def metric(tmp_path_factory):
    import evaluate

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", _refuse_connection)  # any Hub call would fail loudly
    loaded = evaluate.load(str(METRIC_DIR), cache_dir=str(tmp_path_factory.mktemp("metric_cache")))
    monkeypatch.undo()
    return loaded


def test_metric_equals_seqeval_default_mode_on_random_sequences(metric):
    for gold, pred in random_cases("hstl-metric-seqeval", 200):
        result = metric.compute(predictions=pred, references=gold)
        assert result == seqeval_default_mode(gold, pred), (gold, pred)  # == on floats: exact


def test_metric_equals_hstl_scoring_on_random_sequences(metric):
    for gold, pred in random_cases("hstl-metric-scoring", 200):
        result = metric.compute(predictions=pred, references=gold)
        ours = score_sentences(gold, pred)
        assert (result["overall_precision"], result["overall_recall"], result["overall_f1"]) == \
               pytest.approx((ours["precision"], ours["recall"], ours["f1"]), abs=1e-12)
        per_type = {key: value for key, value in result.items() if not key.startswith("overall_")}
        assert set(per_type) == set(ours["per_type"])
        for entity_type, scores in ours["per_type"].items():
            assert per_type[entity_type] == pytest.approx(
                {"precision": scores["precision"], "recall": scores["recall"], "f1": scores["f1"],
                 "number": scores["num_gold"]}, abs=1e-12)


def test_metric_streams_through_add_batch(metric):
    gold, pred = random_cases("hstl-metric-stream", 1)[0]
    assert len(gold) > 1
    for gold_labels, pred_labels in zip(gold, pred):
        metric.add_batch(predictions=[pred_labels], references=[gold_labels])
    assert metric.compute() == seqeval_default_mode(gold, pred)


def test_metric_refuses_sentences_of_different_lengths_and_labels_that_are_not_iob2(metric):
    with pytest.raises(ValueError, match="sentence 1: expected 2 predicted labels"):
        metric.compute(predictions=[["O"], ["B-X"]], references=[["O"], ["B-X", "I-X"]])
    with pytest.raises(ValueError, match=r"sentence 0, predictions, position 1: expected an IOB2 label .*got 'E-X'"):
        metric.compute(predictions=[["B-X", "E-X"]], references=[["B-X", "I-X"]])


FRESH_SCRIPT = r'''
import json, sys
import evaluate

metric_dir, cases_file, cache_dir = sys.argv[1:4]
metric = evaluate.load(metric_dir, cache_dir=cache_dir)
cases = json.load(open(cases_file))
print(json.dumps([metric.compute(predictions=pred, references=gold) for gold, pred in cases]))
'''


def test_metric_imports_only_evaluate_datasets_and_the_standard_library():
    import ast

    tree = ast.parse((METRIC_DIR / "hstl_ner.py").read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0]
                for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"collections", "datasets", "evaluate"}  # no seqeval: hstl's default install runs it
    assert (METRIC_DIR / "requirements.txt").read_text().split() == ["evaluate>=0.4.3"]


def test_metric_loads_and_scores_where_seqeval_is_not_installed(tmp_path, monkeypatch):
    import sys

    import evaluate

    # seqeval is in the dev extra only: after `pip install -e .` it is absent. None in sys.modules makes its import fail.
    for name in [name for name in sys.modules if name.split(".")[0] == "seqeval"] + ["seqeval"]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError):
        import seqeval  # noqa: F401
    metric = evaluate.load(str(METRIC_DIR), cache_dir=str(tmp_path / "cache"))
    monkeypatch.undo()
    for gold, pred in random_cases("hstl-metric-no-seqeval", 50):
        assert metric.compute(predictions=pred, references=gold) == seqeval_default_mode(gold, pred)


@pytest.mark.slow  # ~25 s: a fresh interpreter imports evaluate and datasets
def test_metric_loads_where_hstl_is_not_importable(tmp_path):
    cases = random_cases("hstl-metric-fresh", 20)
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    results = run_without_hstl(FRESH_SCRIPT, [str(METRIC_DIR), str(tmp_path / "cases.json"),
                                              str(tmp_path / "cache")], tmp_path / "work")
    assert len(results) == len(cases)
    for (gold, pred), result in zip(cases, results):
        assert result == seqeval_default_mode(gold, pred)
