"""The comparison runner: cells, skipping finished ones, the table from result files (tiny runs, seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import tiny_run_config
from hstl.experiments.cells import run_comparison, write_cell_record
from hstl.experiments.config import load_comparison_config
from hstl.experiments.report import format_markdown, legend_labels, mean_over_seeds_text
from hstl.experiments.statistics import summarize
from hstl.run_config import RunConfigError


def _write_config(tmp_path: Path, tokenizer_dir: Path, methods=None, seeds=(1,)) -> Path:
    tiny = tiny_run_config(checkpointing_steps=0, max_steps=2)
    tiny["model"]["tokenizer"] = str(tokenizer_dir)
    values = {
        "model": tiny["model"],
        "corpora": [dict(task, max_validation_sentences=20, max_test_sentences=20) for task in tiny["tasks"]],
        "seeds": list(seeds),
        "training": tiny["training"],
        "finetune_training": dict(tiny["training"], max_steps=1),
    }
    if methods:
        values["methods"] = methods
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_runs_every_method_and_skips_finished_cells(tmp_path, tiny_tokenizer_dir):
    config = load_comparison_config(_write_config(tmp_path, tiny_tokenizer_dir))
    runs = []

    from hstl.experiments.cells import default_train

    def counting_train(run_config, output_dir):
        runs.append((output_dir, [task.name for task in run_config.tasks], run_config.model.init_from,
                     run_config.training.max_steps))
        return default_train(run_config, output_dir)

    summary = run_comparison(config, tmp_path / "out", train=counting_train, log=lambda message: None)
    stage1 = [run for run in runs if run[0].endswith("stage1/seed1")]
    assert len(stage1) == 1 and stage1[0][1] == ["chem", "disease"]
    finetune_only_pretrain = [run for run in runs if "pretrain_without/chem" in run[0]]
    assert finetune_only_pretrain[0][1] == ["disease"]  # the target is left out of the joint stage
    # Its new head trains like a single-task run (training.max_steps 2), not like HSTL's stage 2 (1 step).
    finetune_only = [run for run in runs if "/finetune_only/" in run[0]]
    assert {(tuple(run[1]), run[3]) for run in finetune_only} == {(("chem",), 2), (("disease",), 2)}
    assert all("pretrain_without" in run[2] for run in finetune_only)
    hstl_runs = [run for run in runs if "/hstl/" in run[0]]
    assert {run[3] for run in hstl_runs} == {1}
    assert {tuple(run[1]) for run in hstl_runs} == {("chem",), ("disease",)}
    assert all(run[2].endswith("stage1/seed1") for run in hstl_runs)
    assert set(summary["methods"]) == {"single_task", "multi_task", "finetune_only", "hstl"}
    for corpus, family in (("chem", "chemical"), ("disease", "disease")):
        assert set(summary["table"][corpus]) == set(summary["methods"])
        assert "gain_over_single_task" in summary["table"][corpus]["hstl"]
        entry = summary["corpora"][corpus]
        assert entry["family"] == family and set(entry["methods"]) == set(summary["methods"])
        # Test F1 x 100 per seed, as in the all_results.json of each cell's run.
        cell = json.loads((tmp_path / f"out/cells/hstl/{corpus}/seed1.json").read_text())
        run_results = json.loads((Path(cell["run_dir"]) / "all_results.json").read_text())
        assert entry["methods"]["hstl"] == [pytest.approx(100 * run_results["test"][corpus]["f1"])]
        # Per-sentence test counts, predicted again from the saved model, add up to the run's own test scores.
        totals = [sum(column) for column in zip(*cell["test_counts"])]
        assert totals == [run_results["test"][corpus][key] for key in ("num_correct", "num_pred", "num_gold")]
        assert len(cell["test_counts"]) == 20  # max_test_sentences
        # HSTL's cell took stage 1 and its stage 2, each timed.
        assert len(cell["wall_seconds"]) == 2 and all(seconds > 0 for seconds in cell["wall_seconds"])
        bootstrap = entry["bootstrap_hstl_vs_single_task"]["1"]
        assert bootstrap["num_sentences"] == 20
        assert bootstrap["delta"] == pytest.approx((entry["methods"]["hstl"][0] - entry["methods"]["single_task"][0])
                                                   / 100)
    for name in ("results.json", "results.md", "results.png"):
        assert (tmp_path / "out" / name).exists()
    assert "Paired bootstrap" in (tmp_path / "out" / "results.md").read_text()

    def failing_train(run_config, output_dir):
        raise AssertionError(f"finished cell redone: {output_dir}")

    again = run_comparison(config, tmp_path / "out", train=failing_train, log=lambda message: None)
    assert again["table"] == summary["table"]


def test_table_is_computed_from_result_files(tmp_path):
    import shutil

    cells = tmp_path / "cells"
    for method, corpus, seed, f1 in [
        ("single_task", "A", 1, 0.50), ("single_task", "A", 2, 0.70),
        ("hstl", "A", 1, 0.80), ("hstl", "A", 2, 0.60),
    ]:
        path = cells / method / corpus / f"seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"method": method, "corpus": corpus, "family": "F", "seed": seed,
                                    "test": {"f1": f1}}))
    summary = summarize(tmp_path)
    assert summary["corpora"]["A"]["methods"] == {"single_task": [50.0, 70.0], "hstl": [80.0, 60.0]}
    assert summary["table"]["A"]["single_task"]["mean"] == pytest.approx(0.60)
    assert summary["table"]["A"]["single_task"]["std"] == pytest.approx(0.1414213, rel=1e-5)
    assert summary["table"]["A"]["hstl"]["gain_over_single_task"] == pytest.approx(0.10)
    assert "| A | F | 60.00 ± 14.14 | 70.00 ± 14.14 (+10.00) |" in format_markdown(summary)
    # a method with fewer seeds (still running) says how many, and one seed has no spread to show; its gain is over
    # the seeds both have (single-task seed 1: 0.50)
    path = cells / "multi_task" / "A" / "seed1.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"method": "multi_task", "corpus": "A", "family": "F", "seed": 1, "test": {"f1": 0.55}}))
    assert "| A | F | 60.00 ± 14.14 | 55.00 [1 seed] (+5.00) | 70.00 ± 14.14 (+10.00) |" in format_markdown(
        summarize(tmp_path))
    # a seed that single-task does not have yet counts in the mean, not in the gain
    (cells / "multi_task" / "A" / "seed3.json").write_text(json.dumps({"method": "multi_task", "corpus": "A",
                                                                       "family": "F", "seed": 3, "test": {"f1": 0.9}}))
    assert "| 72.50 ± 24.75 (+5.00) |" in format_markdown(summarize(tmp_path))
    shutil.rmtree(cells / "multi_task")
    # change one file: the table follows
    path = cells / "hstl" / "A" / "seed2.json"
    path.write_text(json.dumps({"method": "hstl", "corpus": "A", "seed": 2, "test": {"f1": 0.8}}))
    assert summarize(tmp_path)["table"]["A"]["hstl"]["gain_over_single_task"] == pytest.approx(0.20)


@pytest.mark.parametrize(("n", "most", "expected"), [
    (3, 3, "60.00 ± 1.25"),             # every method has every seed: nothing to mark
    (2, 3, "60.00 ± 1.25 [2 seeds]"),   # still running
    (1, 3, "60.00 [1 seed]"),           # no spread from one seed
    (1, 1, "60.00 [1 seed]"),           # one seed everywhere is still said
])
def test_mean_over_seeds_marks_short_and_single_seed_counts(n, most, expected):
    assert mean_over_seeds_text(60.0, 1.25, n, most) == expected


def test_chart_legend_says_how_many_seeds_each_method_has(tmp_path, monkeypatch):
    from hstl.experiments import report

    def row(n):
        return {"mean": 0.5, "std": 0.0, "n": n, "f1": [0.5] * n}

    summary = {"methods": ["single_task", "multi_task", "hstl", "finetune_only"], "corpora": {"A": {}, "B": {}},
               "table": {"A": {"single_task": row(3), "multi_task": row(1), "hstl": row(2)},
                         "B": {"single_task": row(3), "multi_task": row(1), "hstl": row(3)}}}
    assert legend_labels(summary) == {"single_task": "single_task (3 seeds)", "multi_task": "multi_task (1 seed)",
                                      "hstl": "hstl (2-3 seeds)", "finetune_only": "finetune_only"}
    drawn = {}
    monkeypatch.setattr("hstl.plotting.grouped_bar_chart", lambda path, groups, bars, **kwargs: drawn.update(bars))
    report.plot_summary(summary, tmp_path / "chart.png")
    assert sorted(drawn) == ["finetune_only", "hstl (2-3 seeds)", "multi_task (1 seed)", "single_task (3 seeds)"]


def test_bad_comparison_configs_name_the_file(tmp_path, tiny_tokenizer_dir):
    path = _write_config(tmp_path, tiny_tokenizer_dir, methods=["single_task", "magic"])
    with pytest.raises(RunConfigError, match="compare.yaml: methods"):
        load_comparison_config(path)
    values = yaml.safe_load(path.read_text())
    values["methods"] = ["hstl"]
    values["corpora"] = values["corpora"][:1]
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(RunConfigError, match="at least 2 corpora"):
        load_comparison_config(path)


def test_command_line_overrides_choose_methods_seeds_and_steps(tmp_path, tiny_tokenizer_dir):
    from hstl.experiments.config import override_comparison_config

    config = load_comparison_config(_write_config(tmp_path, tiny_tokenizer_dir, seeds=(1, 2)))
    runs = []

    def recording_train(run_config, output_dir):
        runs.append((output_dir, run_config.training.max_steps, run_config.training.seed))
        return {"test": {task.name: {"f1": 0.5} for task in run_config.tasks}, "validation": {}}

    overridden = override_comparison_config(config, methods=["single_task"], seeds=[3], max_steps=9)
    assert (config.methods, config.seeds, config.training.max_steps) != (["single_task"], [3], 9)  # a copy
    run_comparison(overridden, tmp_path / "out", train=recording_train, log=lambda message: None)
    assert sorted(runs) == [(str(tmp_path / f"out/runs/single_task/{name}/seed3"), 9, 3) for name in ("chem", "disease")]
    recorded = yaml.safe_load((tmp_path / "out/comparison_config.yaml").read_text())
    assert (recorded["methods"], recorded["seeds"], recorded["training"]["max_steps"]) == (["single_task"], [3], 9)
    for bad in ({"methods": ["magic"]}, {"methods": []}, {"seeds": []}, {"max_steps": 0}):
        with pytest.raises(RunConfigError, match="--"):
            override_comparison_config(config, **bad)


def test_command_line_overrides_leave_the_loaded_config_unchanged(tmp_path, tiny_tokenizer_dir):
    from hstl.experiments.config import comparison_config_to_dict, override_comparison_config

    config = load_comparison_config(_write_config(tmp_path, tiny_tokenizer_dir, seeds=(1, 2)))
    loaded = comparison_config_to_dict(config)
    overridden = override_comparison_config(config, methods=["hstl"], seeds=[5], max_steps=11)
    assert comparison_config_to_dict(config) == loaded
    assert (overridden.methods, overridden.seeds, overridden.training.max_steps) == (["hstl"], [5], 11)


def test_only_targets_get_cells_and_finetune_only_runs_where_told(tmp_path, tiny_tokenizer_dir):
    path = _write_config(tmp_path, tiny_tokenizer_dir, seeds=(1, 2))
    values = yaml.safe_load(path.read_text())
    values["corpora"].append(dict(values["corpora"][0], name="extra"))
    values.update(targets=["chem", "disease"], finetune_only_targets=["disease"], finetune_only_seeds=[2],
                  stage1_training=dict(values["training"], max_steps=7))
    path.write_text(yaml.safe_dump(values))
    config = load_comparison_config(path)
    runs = []
    steps = {}

    def recording_train(run_config, output_dir):
        runs.append((str(Path(output_dir).relative_to(tmp_path / "out")), [task.name for task in run_config.tasks]))
        steps[runs[-1][0]] = run_config.training.max_steps
        return {"test": {task.name: {"f1": 0.5} for task in run_config.tasks}, "devel": {}, "completed_steps": 2}

    summary = run_comparison(config, tmp_path / "out", train=recording_train, log=lambda message: None)
    assert list(summary["corpora"]) == ["chem", "disease"]
    assert ("runs/stage1/seed1", ["chem", "disease", "extra"]) in runs
    assert not [run for run in runs if "extra" in run[0]]
    assert sorted(run[0] for run in runs if "finetune_only" in run[0] or "pretrain_without" in run[0]) == [
        "runs/finetune_only/disease/seed2", "runs/pretrain_without/disease/seed2"]
    assert summary["corpora"]["disease"]["methods"]["finetune_only"] == [50.0]
    assert summary["corpora"]["chem"]["steps"]["hstl"] == [2, 2]
    # Joint runs take stage1_training's budget as it is; the others keep theirs.
    assert (steps["runs/stage1/seed1"], steps["runs/pretrain_without/disease/seed2"]) == (7, 7)
    assert (steps["runs/single_task/chem/seed1"], steps["runs/hstl/chem/seed1"]) == (2, 1)
    for key, value in (("targets", ["chem", "nope"]), ("finetune_only_targets", ["extra"]),
                       ("finetune_only_seeds", [])):
        path.write_text(yaml.safe_dump(dict(values, **{key: value})))
        with pytest.raises(RunConfigError, match=f"compare.yaml: {key}"):
            load_comparison_config(path)


@pytest.mark.parametrize(("stage1_max_steps", "expected_joint"), [(None, (None, 2.0)), (50, (50, None))])
def test_epoch_budgets_reach_every_run(tmp_path, tiny_tokenizer_dir, stage1_max_steps, expected_joint):
    """`training.num_train_epochs` reaches single-task runs as it is, and joint runs too (a joint epoch is one pass
    over all corpora); `stage1_max_steps` replaces it for joint runs; `--max_steps` replaces it in both."""
    from hstl.experiments.config import override_comparison_config

    path = _write_config(tmp_path, tiny_tokenizer_dir)
    values = yaml.safe_load(path.read_text())
    del values["training"]["max_steps"]
    values["training"]["num_train_epochs"] = 2
    values["methods"] = ["single_task", "multi_task"]
    if stage1_max_steps:
        values["stage1_max_steps"] = stage1_max_steps
    path.write_text(yaml.safe_dump(values))
    runs = {}

    def recording_train(run_config, output_dir):
        runs[Path(output_dir).parts[-3]] = (run_config.training.max_steps, run_config.training.num_train_epochs)
        return {"test": {task.name: {"f1": 0.5} for task in run_config.tasks}, "validation": {}}

    config = load_comparison_config(path)
    run_comparison(config, tmp_path / "out", train=recording_train, log=lambda message: None)
    assert runs == {"single_task": (None, 2.0), "runs": expected_joint}  # runs/stage1/seed1: parts[-3] is "runs"
    runs.clear()
    run_comparison(override_comparison_config(config, max_steps=9), tmp_path / "over", train=recording_train,
                   log=lambda message: None)
    assert runs == {"single_task": (9, None), "runs": (stage1_max_steps or 18, None)}


def test_convergence_is_read_from_each_cells_own_validation_curve(tmp_path):
    """Validation curves written by hand (training-loss lines between), in run folders recorded under another path
    (the comparison was started elsewhere; the report is built from the output folder):
    - single-task A, seed 1: evaluated at 100..600, best 0.80 at 500, best of steps <= 400 is 0.74: late gain 0.06;
    - single-task A, seed 2: levelled off, best 0.70 at 200 (and again at 400): late gain 0;
    - multi-task A, seed 1 (a stage-1 run): A's best is 0.80 at 500, but the run kept step 300, its best mean;
    - HSTL A, seed 1: no log, no convergence."""
    single = {1: [(100, 0.50), (200, 0.70), (300, 0.72), (400, 0.74), (500, 0.80), (600, 0.79)],
              2: [(100, 0.60), (200, 0.70), (300, 0.69), (400, 0.70), (500, 0.65), (600, 0.68)]}
    runs = {("single_task", 1): [(step, score, score) for step, score in single[1]],
            ("single_task", 2): [(step, score, score) for step, score in single[2]],
            ("multi_task", 1): [(step, score, mean) for (step, score), mean
                                in zip(single[1], [0.5, 0.6, 0.9, 0.7, 0.8, 0.7])]}
    for (method, seed), curve in runs.items():
        run_dir = tmp_path / "out" / "runs" / method / f"seed{seed}"
        run_dir.mkdir(parents=True)
        lines = []
        for step, score, mean in curve:
            lines += [{"step": step, "train_loss": 1.0},
                      {"step": step, "validation_f1/A": score, "validation_f1/B": 0.99, "validation_f1/mean": mean}]
        (run_dir / "train_log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    for method, seed in [*runs, ("hstl", 1)]:
        path = tmp_path / "out" / "cells" / method / "A" / f"seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"method": method, "corpus": "A", "family": "F", "seed": seed, "test": {"f1": 0.5},
                                    "run_dir": f"started/elsewhere/runs/{method}/seed{seed}"}))
    summary = summarize(tmp_path / "out")
    convergence = summary["corpora"]["A"]["convergence"]
    seed1, seed2 = convergence["single_task"]
    assert (seed1["best_step"], seed1["last_step"], seed1["best_f1"]) == (500, 600, 0.80)
    assert seed1["late_gain"] == pytest.approx(0.06)
    assert (seed2["best_step"], seed2["late_gain"]) == (200, 0.0)
    (joint,) = convergence["multi_task"]
    assert (joint["best_step"], joint["best_f1"]) == (300, 0.80) and joint["late_gain"] == pytest.approx(0.06)
    assert convergence["hstl"] == [None]
    markdown = format_markdown(summary)
    # each cell's row: seed, test F1, best and last step, stop reason (unknown: these records do not say), converged,
    # budget round, late gain
    assert "| A | single_task | 1 | 50.00 | 500 | 600 | ? | no | 0 | +6.00 |" in markdown
    assert "| A | single_task | 2 | 50.00 | 200 | 600 | ? | no | 0 | +0.00 |" in markdown
    assert "| A | multi_task | 1 | 50.00 | 300 | 600 | ? | no | 0 | +6.00 |" in markdown


def test_report_counts_best_steps_patience_before_the_end_and_lists_every_budget_round(tmp_path):
    """Cell records written by hand, patience 3:
    - single-task A seed 1: early stopping, best 3 evaluations before the end; rerun from round 0 (test 0.70) and
      round 1 (0.74) to round 2 (0.75): +5.00 from the first round;
    - single-task A seed 2: early stopping, best 2 evaluations before the end (a gain below the threshold came
      later): converged, not counted in the stricter count; rerun from 0.80 to 0.78: -2.00;
    - single-task A seed 3: budget-ended, best at its last step, never rerun;
    - HSTL A seed 1: early stopping, best 5 evaluations before the end, no rerun."""
    def convergence(best, last, after, reason):
        return {"best_step": best, "last_step": last, "evaluations_after_best": after, "patience": 3,
                "stop_reason": reason, "converged": reason == "early_stopping"}

    records = [
        ("single_task", 1, 0.75, convergence(300, 600, 3, "early_stopping"), 2,
         [{"budget_round": 0, "test_f1": 0.70, "convergence": convergence(100, 100, 0, "budget")},
          {"budget_round": 1, "test_f1": 0.74, "convergence": convergence(250, 300, 1, "budget")}]),
        ("single_task", 2, 0.78, convergence(400, 600, 2, "early_stopping"), 2,
         [{"budget_round": 0, "test_f1": 0.80, "convergence": convergence(90, 100, 1, "budget")}]),
        ("single_task", 3, 0.60, convergence(100, 100, 0, "budget"), 0, None),
        ("hstl", 1, 0.90, convergence(100, 600, 5, "early_stopping"), 0, None),
    ]
    for method, seed, f1, record, budget_round, previous in records:
        path = tmp_path / "cells" / method / "A" / f"seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        cell = {"method": method, "corpus": "A", "family": "F", "seed": seed, "test": {"f1": f1},
                "convergence": record, "budget_round": budget_round}
        path.write_text(json.dumps(cell | ({"previous_rounds": previous} if previous else {})))
    summary = summarize(tmp_path)
    assert summary["convergence_counts"] == {
        "single_task": {"converged": 2, "best_patience_before_end": 1, "cells": 3},
        "hstl": {"converged": 1, "best_patience_before_end": 1, "cells": 1}}
    shifts = summary["rerun_shifts"]
    assert list(shifts) == ["single_task"] and shifts["single_task"]["cells"] == 2
    assert (shifts["single_task"]["min"], shifts["single_task"]["max"]) == (pytest.approx(-2.0), pytest.approx(5.0))
    markdown = format_markdown(summary)
    assert ("single_task 2 of 3; hstl 1 of 1. Of these, with the best validation F1 at least `patience` evaluations "
            "before the end: single_task 1; hstl 1.") in markdown
    assert "Test F1 x 100 from the first round to the recorded one: single_task 2 cells, -2.00 to +5.00." in markdown
    rounds = [line for line in markdown.splitlines() if line.count("|") == 9 and line.startswith("| A |")]
    assert rounds == ["| A | single_task | 1 | 0 | 70.00 | 100 | 100 | budget |",
                      "| A | single_task | 1 | 1 | 74.00 | 250 | 300 | budget |",
                      "| A | single_task | 1 | 2 | 75.00 | 300 | 600 | early_stopping |",
                      "| A | single_task | 2 | 0 | 80.00 | 90 | 100 | budget |",
                      "| A | single_task | 2 | 2 | 78.00 | 400 | 600 | early_stopping |"]


def test_cells_kept_elsewhere_outlive_the_run_folders(tmp_path, tiny_tokenizer_dir):
    """With `cells_dir`, finished cells go there (not under the output folder) with their validation convergence, so
    that a comparison spread over machines that lose their run folders redoes no finished cell and still reports how
    each run ended. The stand-in training writes a validation curve: best 0.8 at step 300 of 400, 0.6 at most in the
    first two thirds (steps 100 and 200)."""
    import shutil

    config = load_comparison_config(_write_config(tmp_path, tiny_tokenizer_dir, methods=["single_task"]))

    def curve_train(run_config, output_dir):
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        name = run_config.tasks[0].name
        lines = [{"step": step, f"validation_f1/{name}": score} for step, score in ((100, 0.5), (200, 0.6), (300, 0.8), (400, 0.7))]
        (Path(output_dir) / "train_log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        return {"test": {name: {"f1": 0.6}}, "validation": {}}

    run_comparison(config, tmp_path / "out", train=curve_train, log=lambda message: None, cells_dir=tmp_path / "kept")
    assert sorted(path.relative_to(tmp_path / "kept").as_posix() for path in (tmp_path / "kept").rglob("*.json")) == [
        "single_task/chem/seed1.json", "single_task/disease/seed1.json"]
    assert not (tmp_path / "out" / "cells").exists()
    shutil.rmtree(tmp_path / "out")  # a new machine: the runs are gone, the kept cells are not

    def failing_train(run_config, output_dir):
        raise AssertionError(f"finished cell redone: {output_dir}")

    summary = run_comparison(config, tmp_path / "new", train=failing_train, log=lambda message: None,
                             cells_dir=tmp_path / "kept")
    for corpus in ("chem", "disease"):
        assert summary["corpora"][corpus]["methods"] == {"single_task": [60.0]}
        (convergence,) = summary["corpora"][corpus]["convergence"]["single_task"]
        assert (convergence["best_step"], convergence["last_step"], convergence["best_f1"]) == (300, 400, 0.8)
        assert convergence["late_gain"] == pytest.approx(0.2)


def _stand_in_train(runs: dict, stop_early_below: int | None = None):
    """A training function that records each run's budget and reports early stopping when the budget is at least
    `stop_early_below` steps (None: never), as training's all_results.json does."""

    def train(run_config, output_dir):
        training = run_config.training
        runs[str(output_dir)] = (training.max_steps, training.num_train_epochs, training.early_stopping_patience)
        steps = training.max_steps or 10
        stopped = stop_early_below is not None and steps >= stop_early_below
        return {"test": {task.name: {"f1": 0.5} for task in run_config.tasks}, "validation": {},
                "completed_steps": steps - 1 if stopped else steps, "max_steps": steps,
                "stopped_early_at_step": steps - 1 if stopped else None}

    return train


def test_unconverged_cells_are_rerun_with_larger_budgets_until_early_stopping_ends_them(tmp_path, tiny_tokenizer_dir):
    path = _write_config(tmp_path, tiny_tokenizer_dir)
    values = yaml.safe_load(path.read_text())
    values.update(methods=["single_task", "multi_task"], rerun_unconverged=["single_task"], rerun_budget_factor=3,
                  rerun_max_rounds=2)
    values["training"]["early_stopping_patience"] = 3
    path.write_text(yaml.safe_dump(values))
    config = load_comparison_config(path)
    out, runs = tmp_path / "out", {}
    # budgets 2, then 6, then 18: early stopping ends the run only with 18 steps
    summary = run_comparison(config, out, train=_stand_in_train(runs, stop_early_below=18), log=lambda message: None)
    single = {run: budget for run, budget in runs.items() if "single_task/chem" in run}
    assert single == {str(out / "runs/single_task/chem/seed1"): (2, None, 3),
                      str(out / "runs/single_task/chem/seed1/round1"): (6, None, 3),
                      str(out / "runs/single_task/chem/seed1/round2"): (18, None, 3)}
    cell = json.loads((out / "cells/single_task/chem/seed1.json").read_text())
    assert (cell["budget_round"], cell["completed_steps"], cell["convergence"]["converged"]) == (2, 17, True)
    assert cell["convergence"]["stop_reason"] == "early_stopping"
    assert [(r["budget_round"], r["convergence"]["stop_reason"]) for r in cell["previous_rounds"]] == [
        (0, "budget"), (1, "budget")]
    # multi_task is not rerun: its budget-ended cell is final and says so
    multi = json.loads((out / "cells/multi_task/chem/seed1.json").read_text())
    assert (multi["budget_round"], multi["convergence"]["converged"]) == (0, False)
    assert summary["corpora"]["chem"]["methods"]["single_task"] == [50.0]
    # a second invocation finds every cell final and trains nothing
    runs.clear()
    run_comparison(config, out, train=_stand_in_train(runs, stop_early_below=18), log=lambda message: None)
    assert runs == {}


def test_a_record_from_before_budget_rounds_is_kept_as_round_0_when_a_rerun_replaces_it(tmp_path):
    path = tmp_path / "seed1.json"
    path.write_text(json.dumps({"test": {"f1": 0.64}, "completed_steps": 600}))  # no budget_round: written before them
    write_cell_record(path, {"test": {"f1": 0.66}, "completed_steps": 1800, "budget_round": 1})
    (previous,) = json.loads(path.read_text())["previous_rounds"]
    assert (previous["budget_round"], previous["completed_steps"], previous["test_f1"]) == (0, 600, 0.64)


def test_rerun_first_round_skips_the_smaller_rerun_budgets(tmp_path, tiny_tokenizer_dir):
    path = _write_config(tmp_path, tiny_tokenizer_dir)
    values = yaml.safe_load(path.read_text())
    values.update(methods=["single_task"], rerun_unconverged=["single_task"], rerun_budget_factor=3,
                  rerun_max_rounds=2, rerun_first_round=2)
    path.write_text(yaml.safe_dump(values))
    out, runs = tmp_path / "out", {}
    # budgets 2, then straight to 2 * 3 ** 2 = 18 (no 6-step round), where early stopping ends the run
    run_comparison(load_comparison_config(path), out, train=_stand_in_train(runs, stop_early_below=18),
                   log=lambda message: None)
    assert {run: budget[0] for run, budget in runs.items() if "single_task/chem" in run} == {
        str(out / "runs/single_task/chem/seed1"): 2, str(out / "runs/single_task/chem/seed1/round2"): 18}
    cell = json.loads((out / "cells/single_task/chem/seed1.json").read_text())
    assert (cell["budget_round"], cell["convergence"]["converged"]) == (2, True)
    assert [r["budget_round"] for r in cell["previous_rounds"]] == [0]


def test_rounds_end_at_rerun_max_rounds_and_converged_cells_are_kept(tmp_path, tiny_tokenizer_dir):
    path = _write_config(tmp_path, tiny_tokenizer_dir)
    values = yaml.safe_load(path.read_text())
    values.update(methods=["single_task"], rerun_unconverged=["single_task"], rerun_budget_factor=2,
                  rerun_max_rounds=1)
    path.write_text(yaml.safe_dump(values))
    out, runs = tmp_path / "out", {}
    run_comparison(load_comparison_config(path), out, train=_stand_in_train(runs), log=lambda message: None)
    assert sorted(budget[0] for run, budget in runs.items() if "chem" in run) == [2, 4]  # one rerun, never stopped
    assert json.loads((out / "cells/single_task/chem/seed1.json").read_text())["convergence"]["converged"] is False
    # a cell that early stopping ended is final at round 0
    out, runs = tmp_path / "out2", {}
    run_comparison(load_comparison_config(path), out, train=_stand_in_train(runs, stop_early_below=1),
                   log=lambda message: None)
    assert sorted(runs) == [str(out / "runs/single_task/chem/seed1"), str(out / "runs/single_task/disease/seed1")]


def test_single_task_matched_gets_hstls_stage1_plus_stage2_steps_without_early_stopping(tmp_path,
                                                                                         tiny_tokenizer_dir):
    path = _write_config(tmp_path, tiny_tokenizer_dir)
    values = yaml.safe_load(path.read_text())
    values.update(methods=["hstl", "single_task_matched"], matched_targets=["disease"],
                  stage1_training=dict(values["training"], max_steps=7))
    values["training"]["early_stopping_patience"] = 2
    values["finetune_training"]["max_steps"] = 3
    path.write_text(yaml.safe_dump(values))
    out, runs = tmp_path / "out", {}
    summary = run_comparison(load_comparison_config(path), out, train=_stand_in_train(runs), log=lambda m: None)
    matched = {run: budget for run, budget in runs.items() if "/runs/single_task_matched/" in run}
    assert matched == {str(out / "runs/single_task_matched/disease/seed1"): (7 + 3, None, None)}
    cell = json.loads((out / "cells/single_task_matched/disease/seed1.json").read_text())
    assert cell["matched_to_hstl"] == {"stage1_steps": 7, "stage2_steps": 3}
    assert "single_task_matched" in summary["methods"]
    hstl = json.loads((out / "cells/hstl/disease/seed1.json").read_text())
    assert hstl["stage1_completed_steps"] == 7


def test_an_hstl_cell_records_the_test_f1_of_its_stage1_on_its_target(tmp_path, tiny_tokenizer_dir):
    path = _write_config(tmp_path, tiny_tokenizer_dir, methods=["hstl"])
    runs, stage1_f1 = {}, {"chem": 0.41, "disease": 0.42}
    stand_in = _stand_in_train(runs)

    def train(run_config, output_dir):  # stage 1 scores each corpus differently, stage 2 scores 0.5
        results = stand_in(run_config, output_dir)
        if len(run_config.tasks) > 1:
            results["test"] = {task.name: {"f1": stage1_f1[task.name]} for task in run_config.tasks}
        return results

    run_comparison(load_comparison_config(path), tmp_path / "out", train=train, log=lambda message: None)
    for corpus, f1 in stage1_f1.items():
        cell = json.loads((tmp_path / "out" / "cells" / "hstl" / corpus / "seed1.json").read_text())
        assert (cell["stage1_test_f1"], cell["test"]["f1"]) == (f1, 0.5)


def test_report_sets_the_retrained_stage1_of_each_rerun_hstl_cell_beside_the_recorded_multi_task_cell(tmp_path):
    """Cell records written by hand: multi_task A seeds 2 and 3 (80, 65) and B seed 1 (50); HSTL A seed 1 at budget
    round 0 (its stage 1 is the recorded one: no row), A seed 2 rerun from a stage 1 at 83 (+3 over 80), A seed 3
    rerun from one at 60 (-5 over 65), B seed 1 rerun without a recorded stage 1 ("?"), B seed 2 rerun with no
    multi_task cell of its seed ("?")."""
    cells = [("multi_task", "A", 2, 0.80, 0, None), ("multi_task", "A", 3, 0.65, 0, None),
             ("multi_task", "B", 1, 0.50, 0, None),
             ("hstl", "A", 1, 0.90, 0, 0.70), ("hstl", "A", 2, 0.85, 2, 0.83), ("hstl", "A", 3, 0.70, 1, 0.60),
             ("hstl", "B", 1, 0.55, 2, None), ("hstl", "B", 2, 0.52, 2, 0.47)]
    for method, corpus, seed, f1, budget_round, stage1 in cells:
        path = tmp_path / "cells" / method / corpus / f"seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"method": method, "corpus": corpus, "family": "F", "seed": seed,
                                    "test": {"f1": f1}, "budget_round": budget_round}
                                   | ({} if stage1 is None else {"stage1_test_f1": stage1})))
    reruns = summarize(tmp_path)["stage1_reruns"]
    assert (reruns["min"], reruns["max"]) == (pytest.approx(-5.0), pytest.approx(3.0))
    markdown = format_markdown(summarize(tmp_path))
    assert "Retrained - recorded: -5.00 to +3.00." in markdown
    header = "| corpus | seed | multi_task (recorded) | stage 1 (retrained) | retrained - recorded | hstl |"
    lines = markdown.splitlines()
    start = lines.index(header) + 2
    assert lines[start:start + 5] == ["| A | 2 | 80.00 | 83.00 | +3.00 | 85.00 |",
                                      "| A | 3 | 65.00 | 60.00 | -5.00 | 70.00 |",
                                      "| B | 1 | 50.00 | ? | ? | 55.00 |",
                                      "| B | 2 | ? | 47.00 | ? | 52.00 |", ""]


def test_report_against_both_baselines_heads_each_table_differently(tmp_path, tiny_tokenizer_dir):
    """docs/results.md quotes the report's tables by their header row (scripts/sync_results_tables.py), so the
    seed-level tables against single_task and against single_task_matched must not share one."""
    path = _write_config(tmp_path, tiny_tokenizer_dir)
    values = yaml.safe_load(path.read_text())
    values.update(methods=["single_task", "hstl", "single_task_matched"], matched_targets=["disease"],
                  stage1_training=dict(values["training"], max_steps=7))
    values["finetune_training"]["max_steps"] = 3
    path.write_text(yaml.safe_dump(values))
    summary = run_comparison(load_comparison_config(path), tmp_path / "out", train=_stand_in_train({}),
                             log=lambda m: None)
    lines = format_markdown(summary).split("\n")
    headers = [line for index, line in enumerate(lines)
               if line.startswith("| corpus") and index + 1 < len(lines) and lines[index + 1].startswith("|---")]
    assert "| corpus | HSTL - single_task (means) | permutation p" in "\n".join(headers)
    assert "| corpus | HSTL - single_task_matched (means) | permutation p" in "\n".join(headers)
    assert len(headers) == len(set(headers)), headers


def test_single_task_matched_waits_for_an_hstl_cell_still_to_be_rerun(tmp_path, tiny_tokenizer_dir):
    path = _write_config(tmp_path, tiny_tokenizer_dir)
    values = yaml.safe_load(path.read_text())
    values.update(methods=["single_task_matched"], rerun_unconverged=["hstl"])
    path.write_text(yaml.safe_dump(values))
    out = tmp_path / "out"
    cell = out / "cells/hstl/chem/seed1.json"
    cell.parent.mkdir(parents=True)
    cell.write_text(json.dumps({"method": "hstl", "corpus": "chem", "seed": 1, "test": {"f1": 0.5},
                                "completed_steps": 4, "stage1_completed_steps": 9, "budget_round": 0,
                                "convergence": {"converged": False}}))
    runs, messages = {}, []
    run_comparison(load_comparison_config(path), out, train=_stand_in_train(runs), log=messages.append)
    assert runs == {}
    assert any("single_task_matched chem: waits" in message for message in messages)


def test_an_epoch_budget_grows_in_epochs(tmp_path, tiny_tokenizer_dir):
    path = _write_config(tmp_path, tiny_tokenizer_dir)
    values = yaml.safe_load(path.read_text())
    del values["training"]["max_steps"]
    values["training"]["num_train_epochs"] = 1.5
    values.update(methods=["single_task"], rerun_unconverged=["single_task"], rerun_budget_factor=3,
                  rerun_max_rounds=1)
    path.write_text(yaml.safe_dump(values))
    out, runs = tmp_path / "out", {}
    run_comparison(load_comparison_config(path), out, train=_stand_in_train(runs), log=lambda message: None)
    assert {budget for run, budget in runs.items() if "/chem/" in run} == {(None, 1.5, None), (None, 4.5, None)}


@pytest.mark.parametrize(("key", "value"), [("bootstrap_block_size", 0), ("rerun_unconverged", ["magic"]),
                                            ("rerun_budget_factor", "x"), ("matched_targets", ["nope"]),
                                            ("rerun_first_round", 3)])
def test_bad_control_and_statistics_settings_name_the_file_and_key(tmp_path, tiny_tokenizer_dir, key, value):
    path = _write_config(tmp_path, tiny_tokenizer_dir)
    values = yaml.safe_load(path.read_text())
    values[key] = value
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(RunConfigError, match=f"compare.yaml[:.] ?{key}"):
        load_comparison_config(path)
