"""Early stopping: the rule (hstl/early_stopping.py) on constructed score sequences, and the loop's hook on a tiny run."""

from __future__ import annotations

import json

import pytest

from conftest import tiny_run_config
from hstl.early_stopping import EarlyStopping
from hstl.run_config import RunConfigError, load_run_config, run_config_from_dict
from hstl.training import LoopArguments, run_training


def first_stop(patience: int | None, improvements: list[bool], eval_steps: int) -> int | None:
    """The step at which `EarlyStopping` first says stop, evaluating every `eval_steps` steps, or None."""
    stopper = EarlyStopping(patience)
    for evaluation, improved in enumerate(improvements, start=1):
        if stopper.update(evaluation * eval_steps, improved):
            return evaluation * eval_steps
    return None


@pytest.mark.parametrize(
    ("patience", "improvements", "stop_step"),
    [
        # Improved at 50, 100; then 150, 200 without: patience 2 stops at 200.
        (2, [True, True, False, False, True], 200),
        # An improvement resets the count: misses at 100, then 200, 250, 300.
        (3, [True, False, True, False, False, False, True], 300),
        (1, [True, True, False], 150),
        (1, [False], 50),
        (4, [True, False, False, False], None),
        (None, [False] * 20, None),
    ],
)
def test_stops_at_the_step_the_rule_names(patience, improvements, stop_step):
    assert first_stop(patience, improvements, eval_steps=50) == stop_step


def test_state_round_trip_continues_the_count():
    stopper = EarlyStopping(3)
    for step, improved in ((10, True), (20, False), (30, False)):
        assert not stopper.update(step, improved)
    resumed = EarlyStopping(3)
    resumed.load_state_dict(json.loads(json.dumps(stopper.state_dict())))
    assert resumed.update(40, False) and resumed.stopped_at_step == 40
    fresh = EarlyStopping(3)
    fresh.load_state_dict({})  # a checkpoint from before early stopping existed
    assert not fresh.update(40, False)


@pytest.mark.parametrize("patience", [0, -1, 2.0, True, "3"])
def test_rejects_bad_patience(patience):
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience)


def test_run_config_refuses_patience_without_evaluations(tmp_path):
    with pytest.raises(RunConfigError, match="early_stopping_patience.*eval_steps 0"):
        run_config_from_dict(tiny_run_config(early_stopping_patience=2, eval_steps=0), source="t.yaml")
    with pytest.raises(RunConfigError, match="early_stopping_patience"):
        run_config_from_dict(tiny_run_config(early_stopping_patience=0, eval_steps=2), source="t.yaml")


def test_frozen_run_stops_after_patience_evaluations_and_finishes(tmp_path, tiny_tokenizer_dir):
    """Learning rates 0: the first evaluation (step 2) sets the best score, the next two (4, 6) cannot beat it,
    so patience 2 stops the run at step 6 of 20, and the run still leaves its model and results."""
    values = tiny_run_config(max_steps=20, eval_steps=2, checkpointing_steps=0, early_stopping_patience=2,
                             encoder_learning_rate=0.0, head_learning_rate=0.0)
    values["model"]["tokenizer"] = str(tiny_tokenizer_dir)
    for task in values["tasks"]:  # small evaluation sets: this test is about when the loop stops
        task.update(max_validation_sentences=10, max_test_sentences=10)
    run_config = run_config_from_dict(values, source="t.yaml", base_dir=tmp_path)
    outcome = run_training(run_config, LoopArguments(output_dir=str(tmp_path / "out"), cpu=True))
    results = json.loads((tmp_path / "out" / "all_results.json").read_text())
    assert outcome.completed_steps == results["completed_steps"] == 6
    assert (tmp_path / "out" / "model.safetensors").exists()
    saved = load_run_config(tmp_path / "out" / "run_config.yaml").training
    assert (saved.early_stopping_patience, saved.group_by_length) == (2, True)


def first_stop_with_scores(patience: int, threshold: float, scores: list[float], eval_steps: int) -> int | None:
    """As `first_stop`, with validation scores: the best so far moves on any higher score, as in the loop."""
    stopper, best = EarlyStopping(patience, threshold), None
    for evaluation, score in enumerate(scores, start=1):
        improved = stopper.improves(best, score)
        best = score if best is None or score > best else best
        if stopper.update(evaluation * eval_steps, improved):
            return evaluation * eval_steps
    return None


@pytest.mark.parametrize(
    ("threshold", "scores", "stop_step"),
    [
        # 0.60 beats 0.50 by more than 0.05; 0.64 and 0.66 creep up (best 0.66) but by no more than 0.05: stop at 400.
        (0.05, [0.50, 0.60, 0.64, 0.66, 0.90], 400),
        # Without a threshold every creep is an improvement: no stop within these five.
        (0.0, [0.50, 0.60, 0.64, 0.66, 0.90], None),
        # The bar is the best so far (0.66 after the creeps), not the score that last reset the count.
        (0.05, [0.50, 0.60, 0.64, 0.66, 0.70, 0.71], 400),
        # Exactly the threshold is not more than it.
        (0.25, [0.25, 0.50, 0.75], 300),
    ],
)
def test_threshold_counts_small_gains_against_the_patience(threshold, scores, stop_step):
    assert first_stop_with_scores(2, threshold, scores, eval_steps=100) == stop_step


@pytest.mark.parametrize("threshold", [-0.01, float("nan")])
def test_rejects_bad_threshold(threshold):
    with pytest.raises(ValueError, match="threshold"):
        EarlyStopping(2, threshold)
    with pytest.raises(RunConfigError, match="early_stopping_threshold"):
        run_config_from_dict(tiny_run_config(early_stopping_threshold=threshold), source="t.yaml")


def test_loop_applies_the_threshold_to_its_validation_scores(tmp_path, tiny_tokenizer_dir, monkeypatch):
    """Scripted validation scores (the loop's evaluation replaced): 0.50, 0.60, 0.64, 0.66 with threshold 0.05 and
    patience 2 stop the run at the fourth evaluation, step 8 of 20; the best model kept is 0.66's."""
    import hstl.training as training

    scripted = iter([0.50, 0.60, 0.64, 0.66, 0.90, 0.95, 0.97, 0.99, 0.995, 0.999])

    def evaluate(run, split):
        score = next(scripted) if split == "validation" else 0.5
        return {"chem": {"f1": score}, "mean_f1": score}

    monkeypatch.setattr(training, "_evaluate", evaluate)
    values = tiny_run_config(max_steps=20, eval_steps=2, checkpointing_steps=0, early_stopping_patience=2,
                             early_stopping_threshold=0.05)
    values["model"]["tokenizer"] = str(tiny_tokenizer_dir)
    values["tasks"] = values["tasks"][:1]
    outcome = run_training(run_config_from_dict(values, source="t.yaml", base_dir=tmp_path),
                           LoopArguments(output_dir=str(tmp_path / "out"), cpu=True))
    assert outcome.completed_steps == 8
    assert outcome.best_score == pytest.approx(0.66)
