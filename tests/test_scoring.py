"""Tests for hstl/scoring.py and eval/score.py (the `evaluate` metric module: tests/test_evaluate_metric.py).

seqeval (default mode, which follows conlleval.pl) is the reference: chunks and scores must equal it exactly, on
hand-made cases, on random label sequences, and on real corpora with randomly damaged predictions.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities

from hstl.data import read_conll
from hstl.scoring import EntityScorer, score_sentences
from labels_hstl import extract_chunks, split_label

from hstl.commands.score import main as score_main

REPO_ROOT = Path(__file__).resolve().parents[1]
SCORE_KEYS = {"precision", "recall", "f1", "num_gold", "num_pred", "num_correct"}


def seqeval_chunks(labels: list[str]) -> list[tuple[str, int, int]]:
    """seqeval's chunks for one sentence, converted to our end-exclusive convention."""
    return [(entity_type, start, end + 1) for entity_type, start, end in get_entities(list(labels))]


def assert_equals_seqeval(gold: list[list[str]], pred: list[list[str]]) -> dict:
    """Checks chunks, overall scores and per-type scores against seqeval with `==`; returns our result."""
    for gold_labels, pred_labels in zip(gold, pred):
        assert extract_chunks(gold_labels) == seqeval_chunks(gold_labels)
        assert extract_chunks(pred_labels) == seqeval_chunks(pred_labels)
    result = score_sentences(gold, pred)
    with warnings.catch_warnings():
        # seqeval warns whenever a ratio is undefined (no gold or no predicted mention of a type) and numpy when its
        # macro average has no types; the value seqeval then uses, 0.0, is exactly what is compared here.
        warnings.simplefilter("ignore")
        overall = (precision_score(gold, pred), recall_score(gold, pred), f1_score(gold, pred))
        report = classification_report(gold, pred, output_dict=True)
    assert (result["precision"], result["recall"], result["f1"]) == overall
    report_types = {name for name in report if not name.endswith(" avg")}
    assert set(result["per_type"]) == report_types
    for entity_type, scores in result["per_type"].items():
        expected = report[entity_type]
        assert (scores["precision"], scores["recall"], scores["f1"], scores["num_gold"]) == (
            expected["precision"],
            expected["recall"],
            expected["f1-score"],
            expected["support"],
        ), entity_type
    if report_types:
        assert result["num_gold"] == report["micro avg"]["support"]
    return result


# ---------------------------------------------------------------------------------------------------------------------
# extract_chunks


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ([], []),
        (["O", "O"], []),
        (["B-X"], [("X", 0, 1)]),  # a chunk that ends with the sentence
        (["O", "B-X", "I-X"], [("X", 1, 3)]),
        (["I-X", "I-X", "O"], [("X", 0, 2)]),  # I- at the start of a sentence starts a chunk
        (["O", "I-X", "I-X"], [("X", 1, 3)]),  # I- after O starts a chunk (conlleval), it is not dropped
        (["B-X", "O", "I-X"], [("X", 0, 1), ("X", 2, 3)]),
        (["B-X", "B-X"], [("X", 0, 1), ("X", 1, 2)]),
        (["B-X", "I-X", "B-X", "I-X"], [("X", 0, 2), ("X", 2, 4)]),
        (["B-X", "I-Y"], [("X", 0, 1), ("Y", 1, 2)]),  # a type switch inside a chunk starts a new chunk
        (["B-X", "I-X", "I-Y", "I-Y", "B-Y"], [("X", 0, 2), ("Y", 2, 4), ("Y", 4, 5)]),
        (["I-X", "B-X"], [("X", 0, 1), ("X", 1, 2)]),
        (["B-Multi-tissue_structure", "I-Multi-tissue_structure"], [("Multi-tissue_structure", 0, 2)]),
    ],
)
def test_extract_chunks_hand_cases(labels: list[str], expected: list[tuple[str, int, int]]) -> None:
    assert extract_chunks(labels) == expected
    assert extract_chunks(labels) == seqeval_chunks(labels)


@pytest.mark.parametrize("bad_label", ["E-X", "S-X", "B", "I-", "X", "", "b-X", "O-X", "B_X"])
def test_extract_chunks_rejects_non_iob2_labels(bad_label: str) -> None:
    with pytest.raises(ValueError, match=rf"position 1: expected an IOB2 label .*got {bad_label!r}"):
        extract_chunks(["O", bad_label])


def test_split_label() -> None:
    assert split_label("O") == ("O", "")
    assert split_label("B-Gene_or_gene_product") == ("B", "Gene_or_gene_product")
    assert split_label("I-Multi-tissue_structure") == ("I", "Multi-tissue_structure")


# ---------------------------------------------------------------------------------------------------------------------
# score_sentences and EntityScorer


def test_score_sentences_hand_case() -> None:
    gold = [["B-DNA", "I-DNA", "O", "B-protein"], ["O", "B-RNA"]]
    pred = [["B-DNA", "I-DNA", "O", "B-DNA"], ["O", "I-RNA"]]
    result = assert_equals_seqeval(gold, pred)
    assert (result["num_gold"], result["num_pred"], result["num_correct"]) == (3, 3, 2)
    assert result["per_type"]["protein"] == {
        "precision": 0.0, "recall": 0.0, "f1": 0.0, "num_gold": 1, "num_pred": 0, "num_correct": 0,
    }
    assert result["per_type"]["DNA"]["precision"] == 0.5 and result["per_type"]["DNA"]["recall"] == 1.0
    assert set(result) == SCORE_KEYS | {"per_type"}


@pytest.mark.parametrize(
    ("gold", "pred"),
    [
        ([["O", "O"]], [["O", "O"]]),  # nothing to find, nothing found: every ratio undefined
        ([["B-X", "O"]], [["O", "O"]]),  # nothing predicted
        ([["O", "O"]], [["B-X", "O"]]),  # nothing to find
        ([["B-X", "O"]], [["O", "B-X"]]),  # predictions but none correct
    ],
)
def test_undefined_ratios_are_zero_like_seqeval(gold: list[list[str]], pred: list[list[str]]) -> None:
    result = assert_equals_seqeval(gold, pred)
    assert result["f1"] == 0.0


def test_score_sentences_empty_input() -> None:
    result = score_sentences([], [])
    assert result == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "num_gold": 0, "num_pred": 0, "num_correct": 0,
                      "per_type": {}}


def test_score_sentences_rejects_length_mismatches() -> None:
    with pytest.raises(ValueError, match=r"sentence 1: expected 2 predicted labels .*got 1"):
        score_sentences([["O"], ["O", "B-X"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match=r"expected 2 predicted sentences .*got 1"):
        score_sentences([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match=r"sentence 0, predicted labels, position 0: .*got 'S-X'"):
        score_sentences([["O"]], [["S-X"]])


def test_entity_scorer_streams_and_collects_errors() -> None:
    scorer = EntityScorer()
    scorer.add(["B-DNA", "I-DNA", "O"], ["B-DNA", "O", "O"], tokens=["SCL", "locus", "by"])
    scorer.add(["O", "B-protein"], ["B-protein", "B-protein"])
    assert scorer.num_sentences == 2
    assert scorer.false_negatives == [{"sentence": 0, "type": "DNA", "start": 0, "end": 2, "text": "SCL locus"}]
    assert scorer.false_positives == [
        {"sentence": 0, "type": "DNA", "start": 0, "end": 1, "text": "SCL"},
        {"sentence": 1, "type": "protein", "start": 0, "end": 1, "text": None},
    ]
    gold = [["B-DNA", "I-DNA", "O"], ["O", "B-protein"]]
    pred = [["B-DNA", "O", "O"], ["B-protein", "B-protein"]]
    assert scorer.result() == score_sentences(gold, pred)


def test_entity_scorer_add_that_raises_counts_nothing() -> None:
    scorer = EntityScorer()
    scorer.add(["B-X"], ["B-X"])
    before = scorer.result()
    with pytest.raises(ValueError, match="sentence 1, gold labels, position 1"):
        scorer.add(["B-X", "E-X"], ["B-X", "I-X"])
    with pytest.raises(ValueError, match="sentence 1: expected 2 tokens"):
        scorer.add(["B-X", "I-X"], ["B-X", "I-X"], tokens=["a"])
    assert scorer.result() == before and scorer.num_sentences == 1
    assert scorer.false_positives == [] and scorer.false_negatives == []


LABELS = st.sampled_from(["O", "O", "B-X", "I-X", "B-Y", "I-Y", "B-Multi-word"])
SENTENCES = st.lists(st.lists(LABELS, min_size=0, max_size=8), min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), gold=SENTENCES)
def test_random_label_sequences_equal_seqeval(data: st.DataObject, gold: list[list[str]]) -> None:
    pred = [data.draw(st.lists(LABELS, min_size=len(labels), max_size=len(labels))) for labels in gold]
    assert_equals_seqeval(gold, pred)


# ---------------------------------------------------------------------------------------------------------------------
# Real corpora with damaged predictions


def perturb(labels: list[str], entity_types: list[str], rng: random.Random, rate: float) -> list[str]:
    """A copy of `labels` with about `rate` of the positions damaged the ways taggers go wrong."""
    damaged = list(labels)
    for position in range(len(damaged)):
        if rng.random() >= rate:
            continue
        tag, entity_type = split_label(damaged[position])
        damage = rng.choice(["flip_tag", "change_type", "drop", "add", "shift_boundary"])
        if damage == "flip_tag" and tag != "O":
            damaged[position] = f"{'I' if tag == 'B' else 'B'}-{entity_type}"
        elif damage == "change_type" and tag != "O":
            damaged[position] = f"{tag}-{rng.choice(entity_types)}"
        elif damage == "drop":
            damaged[position] = "O"
        elif damage == "add":
            damaged[position] = f"{rng.choice('BI')}-{rng.choice(entity_types)}"
        elif damage == "shift_boundary" and position + 1 < len(damaged):
            damaged[position], damaged[position + 1] = damaged[position + 1], damaged[position]
    return damaged


@pytest.mark.corpora
@pytest.mark.parametrize("corpus", ["BioNLP13CG", "JNLPBA", "NCBI-disease", "BioNLP11ID", "BioNLP13PC"])
def test_real_corpora_with_damaged_predictions_equal_seqeval(bioner_dir: Path, corpus: str) -> None:
    path = bioner_dir / corpus / "devel.tsv"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    gold = [sentence.labels for sentence in read_conll(path)]
    entity_types = sorted({split_label(label)[1] for labels in gold for label in labels} - {""})
    assert score_sentences(gold, gold)["f1"] == 1.0
    rng = random.Random(f"hstl-scoring-{corpus}")
    # Light and heavy damage mixed sentence by sentence: one seqeval pass per corpus keeps the test fast.
    pred = [perturb(labels, entity_types, rng, rng.choice([0.03, 0.3])) for labels in gold]
    result = assert_equals_seqeval(gold, pred)
    assert 0.0 < result["f1"] < 1.0


# ---------------------------------------------------------------------------------------------------------------------
# hstl-score (hstl/commands/score.py, eval/score.py)


def write_tsv(path: Path, sentences: list[list[tuple[str, str]]]) -> Path:
    path.write_text("".join("".join(f"{t}\t{l}\n" for t, l in s) + "\n" for s in sentences), encoding="utf-8")
    return path


GOLD_SENTENCES = [
    [("IL-2", "B-protein"), ("gene", "I-protein"), ("in", "O")],  # lines 1-3, blank line 4
    [("T", "B-cell_type"), ("cells", "I-cell_type")],  # lines 5-6, blank line 7
]
PRED_SENTENCES = [
    [("IL-2", "B-protein"), ("gene", "O"), ("in", "O")],
    [("T", "B-cell_type"), ("cells", "I-cell_type")],
]


def test_cli_subprocess_token_mismatch_is_one_line_exit_2(tmp_path: Path) -> None:
    """The README's command line from the repository root, once: one `error:` line and status 2, no traceback.
    (Other CLI tests call `main` in this process; tests/test_commands.py runs the command from elsewhere.)"""
    gold = write_tsv(tmp_path / "gold.tsv", GOLD_SENTENCES)
    pred = write_tsv(tmp_path / "pred.tsv", [GOLD_SENTENCES[0], [("T", "O"), ("cell", "O")]])
    completed = subprocess.run(
        [sys.executable, "-m", "eval.score", str(gold), str(pred)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 2 and completed.stdout == ""
    assert completed.stderr == f"error: {pred}:6: expected token 'cells' ({gold}:6), got 'cell'\n"


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """eval.score's main in this process (a subprocess pays seconds of imports per call)."""
    status = score_main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_prints_json_and_writes_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gold = write_tsv(tmp_path / "gold.tsv", GOLD_SENTENCES)
    pred = write_tsv(tmp_path / "pred.tsv", PRED_SENTENCES)
    output = tmp_path / "out" / "scores.json"
    status, out, err = run_cli([str(gold), str(pred), "--output", str(output)], capsys)
    assert (status, err) == (0, "")
    printed = json.loads(out)
    assert printed == json.loads(output.read_text(encoding="utf-8"))
    assert set(printed) == SCORE_KEYS | {"per_type"} and set(printed["per_type"]) == {"protein", "cell_type"}
    assert set(printed["per_type"]["protein"]) == SCORE_KEYS
    assert (printed["num_gold"], printed["num_pred"], printed["num_correct"]) == (2, 2, 1)
    gold_labels = [[label for _, label in sentence] for sentence in GOLD_SENTENCES]
    pred_labels = [[label for _, label in sentence] for sentence in PRED_SENTENCES]
    assert printed == score_sentences(gold_labels, pred_labels)


@pytest.mark.parametrize(
    ("pred_sentences", "expected_error"),
    [
        (
            [GOLD_SENTENCES[0]],
            "{pred}: expected 2 sentences (as in {gold}), got 1; the first missing one is at {gold}:5",
        ),
        (
            GOLD_SENTENCES + [[("x", "O")]],
            "{pred}:8: expected the end of the file ({gold} has 2 sentences), got sentence 3",
        ),
        (
            [GOLD_SENTENCES[0][:2], GOLD_SENTENCES[1]],
            "{pred}:3: expected token 'in' ({gold}:3), got the end of the sentence",
        ),
        (
            [GOLD_SENTENCES[0] + [("x", "O")], GOLD_SENTENCES[1]],
            "{pred}:4: expected the end of the sentence ({gold}:4), got 'x'",
        ),
    ],
)
def test_cli_sentence_mismatches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pred_sentences: list, expected_error: str
) -> None:
    gold = write_tsv(tmp_path / "gold.tsv", GOLD_SENTENCES)
    pred = write_tsv(tmp_path / "pred.tsv", pred_sentences)
    status, out, err = run_cli([str(gold), str(pred)], capsys)
    assert (status, out) == (2, "")
    assert err == "error: " + expected_error.format(gold=gold, pred=pred) + "\n"


def test_cli_malformed_and_missing_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gold = write_tsv(tmp_path / "gold.tsv", GOLD_SENTENCES)
    malformed = tmp_path / "pred.tsv"
    malformed.write_text("IL-2\tB-protein\ngene\tE-protein\n", encoding="utf-8")
    status, out, err = run_cli([str(gold), str(malformed)], capsys)
    assert (status, out) == (2, "")
    assert err.startswith(f"error: {malformed}:2: expected an IOB2 label") and err.count("\n") == 1
    status, _, err = run_cli([str(gold), str(tmp_path / "absent.tsv")], capsys)
    assert status == 2 and err == f"error: {tmp_path / 'absent.tsv'}: No such file or directory\n"


def test_cli_writes_errors_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gold = write_tsv(tmp_path / "gold.tsv", GOLD_SENTENCES)
    pred = write_tsv(tmp_path / "pred.tsv", PRED_SENTENCES)
    errors_path = tmp_path / "errors.json"
    status, out, _ = run_cli([str(gold), str(pred), "--errors", str(errors_path)], capsys)
    assert status == 0 and json.loads(out)["num_correct"] == 1
    assert json.loads(errors_path.read_text(encoding="utf-8")) == {
        "false_positives": [{"sentence": 0, "type": "protein", "start": 0, "end": 1, "text": "IL-2"}],
        "false_negatives": [{"sentence": 0, "type": "protein", "start": 0, "end": 2, "text": "IL-2 gene"}],
    }
