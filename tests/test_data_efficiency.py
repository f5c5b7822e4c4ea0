"""The data-efficiency runner: nested fractions, the stage-1 model of each seed, the summary (stand-in training)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from hstl.data import read_split_dir, sample_data_dir
from hstl.experiments.data_efficiency import load_data_efficiency_config, run_data_efficiency
from hstl.run_config import RunConfigError


def _setup(tmp_path: Path, stage1_tasks=("chem",)) -> Path:
    for seed in (1, 2):
        stage1 = tmp_path / "compare" / "runs" / "stage1" / f"seed{seed}"
        stage1.mkdir(parents=True)
        (stage1 / "config.json").write_text(json.dumps({"tasks": [{"name": name} for name in stage1_tasks]}))
    config = {"model": {"encoder": "some-encoder"}, "seeds": [1, 2], "fractions": [0.1, 0.5, 1.0],
              "corpus": {"name": "linnaeus", "family": "species", "data_dir": "sample:linnaeus"},
              "training": {"max_steps": 5}, "finetune_training": {"max_steps": 3}}
    path = tmp_path / "efficiency.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_runs_nested_fractions_from_each_seeds_stage1_and_answers_the_question(tmp_path):
    config = load_data_efficiency_config(_setup(tmp_path))
    num_train = len(read_split_dir(sample_data_dir() / "linnaeus")["train"])
    runs = []
    f1_of = {"from_stage1": {0.1: 0.6, 0.5: 0.7, 1.0: 0.8}, "plain_encoder": {0.1: 0.3, 0.5: 0.5, 1.0: 0.65}}

    def stand_in_train(run_config, output_dir):
        from hstl.corpora import load_task_data

        method = "from_stage1" if run_config.model.init_from else "plain_encoder"
        train = load_task_data(run_config)[0].splits["train"]
        runs.append((method, len(train), run_config.model.init_from, run_config.training.max_steps,
                     run_config.training.seed, [sentence.tokens for sentence in train]))
        fraction = [f for f in (0.1, 0.5, 1.0) if Path(output_dir).parent.name == f"{f:g}"][0]
        return {"test": {"linnaeus": {"f1": f1_of[method][fraction] + 0.01 * run_config.training.seed}},
                "completed_steps": 4}

    summary = run_data_efficiency(config, tmp_path / "out", tmp_path / "compare", train=stand_in_train,
                                  log=lambda message: None)
    sizes = sorted({run[1] for run in runs})
    assert sizes == [math.ceil(0.1 * num_train), math.ceil(0.5 * num_train), num_train]
    # Nested: the 10 % sentences are among the 50 % ones, for every seed and method.
    by_size = {run[1]: run[5] for run in runs}
    assert all(tokens in by_size[sizes[1]] for tokens in by_size[sizes[0]])
    stage1_runs = [run for run in runs if run[0] == "from_stage1"]
    assert all(run[2].endswith(f"stage1/seed{run[4]}") and run[3] == 3 for run in stage1_runs)
    assert all(run[3] == 5 for run in runs if run[0] == "plain_encoder") and len(runs) == 12
    assert summary["curve"]["from_stage1"]["0.1"]["f1"] == pytest.approx([61.0, 62.0])
    question = summary["question"]
    # 61.5 at 10 % against 66.5 at 100 %: 92 %.
    assert question["reaches_90_percent"] and question["ratio"] == pytest.approx(61.5 / 66.5)
    # seeds 1 and 2 score 61 and 62 at 10 % from stage 1
    assert "| from_stage1 | 61.50 ± 0.71 |" in (tmp_path / "out" / "data_efficiency.md").read_text()
    for name in ("data_efficiency.json", "data_efficiency.md", "data_efficiency.png"):
        assert (tmp_path / "out" / name).exists()

    def failing_train(run_config, output_dir):
        raise AssertionError(f"finished cell redone: {output_dir}")

    assert run_data_efficiency(config, tmp_path / "out", tmp_path / "compare", train=failing_train,
                               log=lambda message: None)["curve"] == summary["curve"]


def test_refuses_a_stage1_that_saw_the_corpus_or_is_missing(tmp_path):
    config = load_data_efficiency_config(_setup(tmp_path, stage1_tasks=("chem", "linnaeus")))
    with pytest.raises(RunConfigError, match="stage 1 trained linnaeus"):
        run_data_efficiency(config, tmp_path / "out", tmp_path / "compare", train=None, log=lambda message: None)
    with pytest.raises(RunConfigError, match="no finished stage-1 model for seed 1"):
        run_data_efficiency(config, tmp_path / "out", tmp_path / "elsewhere", train=None, log=lambda message: None)


def test_plain_encoder_runs_need_no_stage1_and_kept_cells_are_not_redone(tmp_path):
    """On a machine without stage-1 models: `methods=["plain_encoder"]` runs, a run of both refuses; the from_stage1
    cells kept (in `cells_dir`) from a machine that had them are not redone and then need no stage-1 model."""
    config = load_data_efficiency_config(_setup(tmp_path))
    runs = []

    def stand_in_train(run_config, output_dir):
        runs.append(Path(output_dir).relative_to(tmp_path).as_posix())
        return {"test": {"linnaeus": {"f1": 0.5}}, "completed_steps": 4}

    missing = tmp_path / "no-stage1-here"
    run_data_efficiency(config, tmp_path / "out", missing, train=stand_in_train, log=lambda message: None,
                        cells_dir=tmp_path / "kept", methods=["plain_encoder"])
    assert sorted(runs) == sorted(f"out/runs/plain_encoder/{f}/seed{s}" for f in ("0.1", "0.5", "1") for s in (1, 2))
    with pytest.raises(RunConfigError, match="no finished stage-1 model for seed 1"):
        run_data_efficiency(config, tmp_path / "out", missing, train=stand_in_train, log=lambda message: None,
                            cells_dir=tmp_path / "kept")
    runs.clear()
    run_data_efficiency(config, tmp_path / "out", tmp_path / "compare", train=stand_in_train,
                        log=lambda message: None, cells_dir=tmp_path / "kept")
    assert sorted(runs) == sorted(f"out/runs/from_stage1/{f}/seed{s}" for f in ("0.1", "0.5", "1") for s in (1, 2))
    assert not (tmp_path / "out" / "cells").exists()
    runs.clear()
    summary = run_data_efficiency(config, tmp_path / "new", missing, train=stand_in_train, log=lambda message: None,
                                  cells_dir=tmp_path / "kept")
    assert runs == [] and summary["num_cells"] == 12
    (tmp_path / "kept" / "from_stage1" / "0.1" / "seed2.json").unlink()  # one seed left: no spread to show
    from hstl.experiments.data_efficiency import format_data_efficiency_markdown, summarize_data_efficiency

    assert "| from_stage1 | 50.00 [1 seed] | 50.00 ± 0.00 |" in format_data_efficiency_markdown(
        summarize_data_efficiency(tmp_path / "kept", config))
    # a point short of the most seeds any point has (a run still going) says how many
    short = {"corpus": "C", "fractions": [0.1, 1.0], "question": None, "curve": {"plain_encoder": {
        "0.1": {"f1": [40.0, 50.0, 60.0], "mean": 50.0, "std": 10.0}, "1": {"f1": [70.0, 80.0], "mean": 75.0,
                                                                           "std": 7.07}}}}
    assert "| plain_encoder | 50.00 ± 10.00 | 75.00 ± 7.07 [2 seeds] |" in format_data_efficiency_markdown(short)


def test_report_only_rebuilds_the_reports_from_kept_cells_without_training(tmp_path, capsys):
    from eval.data_efficiency import main

    config = _setup(tmp_path)
    kept = tmp_path / "kept"
    for method, fraction, seed, f1 in [("from_stage1", "0.1", 1, 0.60), ("from_stage1", "0.1", 2, 0.70),
                                       ("plain_encoder", "1", 1, 0.75)]:
        path = kept / method / fraction / f"seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"method": method, "fraction": float(fraction), "seed": seed, "test": {"f1": f1}}))
    # no comparison folder, no stage-1 model, cells pending: nothing runs, the reports follow the three cells
    assert main(["--config", str(config), "--output_dir", str(tmp_path / "out"), "--cells_dir", str(kept),
                 "--report_only", "--results_prefix", str(tmp_path / "docs" / "de")]) == 0
    assert not (tmp_path / "out" / "runs").exists()
    for markdown in (tmp_path / "out" / "data_efficiency.md", tmp_path / "docs" / "de.md"):
        assert "| from_stage1 | 65.00 ± 7.07 | - | - |" in markdown.read_text()
        assert "| plain_encoder | - | - | 75.00 [1 seed] |" in markdown.read_text()
    question = json.loads((tmp_path / "docs" / "de.json").read_text())["question"]
    assert question["reaches_90_percent"] is False  # 65 against 90 % of 75, 67.5
    # without --report_only the stage-1 models' folder is needed
    with pytest.raises(SystemExit):
        main(["--config", str(config), "--output_dir", str(tmp_path / "out"), "--cells_dir", str(kept)])
    assert "--comparison_dir is required" in capsys.readouterr().err


def test_curve_legend_says_how_many_seeds_each_start_has(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from hstl.experiments.data_efficiency import plot_curve

    legends = []
    monkeypatch.setattr(Figure, "savefig", lambda figure, path, **kwargs: legends.append(
        [text.get_text() for text in figure.axes[0].get_legend().get_texts()]))
    point = {"mean": 50.0, "std": 1.0}
    plot_curve({"corpus": "C", "fractions": [0.1, 1.0], "curve": {
        "from_stage1": {"0.1": point | {"f1": [49.0, 51.0]}, "1": point | {"f1": [50.0]}},
        "plain_encoder": {"0.1": point | {"f1": [49.0, 50.0, 51.0]}}}}, tmp_path / "curve.png")
    assert legends == [["from_stage1 (1-2 seeds)", "plain_encoder (3 seeds)"]]


@pytest.mark.parametrize(("key", "value"), [("fractions", [0.0]), ("fractions", [1.5]), ("seeds", []), ("magic", 1)])
def test_bad_configs_name_the_file_and_key(tmp_path, key, value):
    path = _setup(tmp_path)
    values = yaml.safe_load(path.read_text())
    values[key] = value
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(RunConfigError, match=f"efficiency.yaml: .*{key}"):
        load_data_efficiency_config(path)


def test_unconverged_cells_of_rerun_methods_are_trained_again_with_larger_budgets(tmp_path):
    path = _setup(tmp_path)
    values = yaml.safe_load(path.read_text())
    values.update(seeds=[1], fractions=[1.0], rerun_unconverged=["plain_encoder"], rerun_budget_factor=2,
                  rerun_max_rounds=2)
    values["training"].update(eval_steps=1, early_stopping_patience=1)
    path.write_text(yaml.safe_dump(values))
    budgets = []

    def stand_in_train(run_config, output_dir):
        # early stopping ends a run only from a budget of 20 steps on (5, then 10, then 20)
        steps = run_config.training.max_steps
        budgets.append((Path(output_dir).name, steps))
        stopped = steps >= 20
        return {"test": {"linnaeus": {"f1": 0.5}}, "completed_steps": steps - 1 if stopped else steps,
                "max_steps": steps, "stopped_early_at_step": steps - 1 if stopped else None}

    summary = run_data_efficiency(load_data_efficiency_config(path), tmp_path / "out", tmp_path / "compare",
                                  train=stand_in_train, log=lambda message: None)
    assert sorted(budget for name, budget in budgets if name.startswith(("seed", "round"))) == [3, 5, 10, 20]
    assert ("round2", 20) in budgets and ("seed1", 3) in budgets  # from_stage1 is not rerun: one run of 3 steps
    cell = json.loads((tmp_path / "out/cells/plain_encoder/1/seed1.json").read_text())
    assert (cell["budget_round"], cell["convergence"]["stop_reason"]) == (2, "early_stopping")
    assert [r["budget_round"] for r in cell["previous_rounds"]] == [0, 1]
    assert summary["convergence_counts"] == {"from_stage1": {"converged": 0, "cells": 1},
                                             "plain_encoder": {"converged": 1, "cells": 1}}
    assert "| plain_encoder | 100% | 1 | 50.00 | ? | ? | early_stopping | yes | 2 |" in (
        tmp_path / "out/data_efficiency.md").read_text()


def test_cells_recorded_without_a_stop_reason_are_read_from_their_steps(tmp_path):
    config = load_data_efficiency_config(_setup(tmp_path))  # plain_encoder: 5 steps, from_stage1: 3
    from hstl.experiments.data_efficiency import summarize_data_efficiency

    for method, steps in (("plain_encoder", 5), ("from_stage1", 2)):  # budget used up; stopped one step early
        path = tmp_path / "cells" / method / "1" / "seed1.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"method": method, "fraction": 1.0, "seed": 1, "test": {"f1": 0.5},
                                    "completed_steps": steps, "convergence": {"best_step": steps,
                                                                              "last_step": steps}}))
    curve = summarize_data_efficiency(tmp_path / "cells", config)["curve"]
    (plain,), (stage1,) = curve["plain_encoder"]["1"]["convergence"], curve["from_stage1"]["1"]["convergence"]
    assert (plain["stop_reason"], plain["converged"], plain["max_steps"]) == ("budget", False, 5)
    assert (stage1["stop_reason"], stage1["converged"], stage1["max_steps"]) == ("early_stopping", True, 3)
    assert stage1["stop_reason_from"] == "steps"


def test_a_cell_recorded_without_a_stop_reason_that_stopped_early_is_not_rerun(tmp_path):
    path = _setup(tmp_path)
    values = yaml.safe_load(path.read_text())
    values.update(seeds=[1], fractions=[1.0], rerun_unconverged=["plain_encoder"])
    path.write_text(yaml.safe_dump(values))
    cells = tmp_path / "cells"
    # plain_encoder (rerun until converged) stopped after 4 of its 5 steps; from_stage1 (never rerun) used its 3
    for method, done in (("plain_encoder", 4), ("from_stage1", 3)):
        cell = cells / method / "1" / "seed1.json"
        cell.parent.mkdir(parents=True)
        cell.write_text(json.dumps({"method": method, "fraction": 1.0, "seed": 1, "test": {"f1": 0.5},
                                    "completed_steps": done, "convergence": {"best_step": 1, "last_step": done}}))
    trained = []
    run_data_efficiency(load_data_efficiency_config(path), tmp_path / "out", tmp_path / "compare",
                        train=lambda run_config, output_dir: trained.append(output_dir), log=lambda message: None,
                        cells_dir=cells)
    assert trained == []
