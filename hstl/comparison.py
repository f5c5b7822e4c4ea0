"""The paper's comparison, runnable on any corpora: single-task vs multi-task vs fine-tuning only vs HSTL.

For each seed:
- single_task:   encoder + CRF trained on the target corpus alone (the paper's XLNet-CRF baseline);
- multi_task:    stage 1 on all corpora, evaluated with each corpus's head;
- finetune_only: stage 1 on all corpora *but* the target, then fine-tuned on the target (no joint stage); the
                 target's head is new, so this stage trains like a single-task run (`training`, or
                 `finetune_only_training` when given), only from the pretrained encoder;
- hstl:          stage 1 on all corpora, then fine-tuned on the target (stage 2).

Every training run goes through `hstl.training.run_training`. A cell (method, corpus, seed) is finished when its
`result.json` exists; finished cells are never redone, interrupted runs resume from their latest checkpoint, and the
table is computed from the result files alone.
"""

from __future__ import annotations

import copy
import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from .checkpointing import find_latest_checkpoint
from .run_config import (
    ModelSpec,
    RunConfig,
    RunConfigError,
    TaskSpec,
    TrainingSpec,
    build_model_spec,
    build_spec,
)


METHODS = ("single_task", "multi_task", "finetune_only", "hstl")


@dataclass
class ComparisonConfig:
    """What to compare: corpora (as tasks), seeds, methods, the model, stage-1 and stage-2 training settings."""

    model: ModelSpec
    corpora: list[TaskSpec]
    seeds: list[int] = field(default_factory=lambda: [1, 2])
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    training: TrainingSpec = field(default_factory=TrainingSpec)  # stage 1 and single-task runs
    finetune_training: TrainingSpec = field(default_factory=TrainingSpec)  # stage 2 of HSTL
    # Stage 2 of finetune_only. Its target head (and, for a new family, its family layer) starts untrained, unlike
    # HSTL's, so by default it trains like a single-task run (`training`), only from the pretrained encoder.
    finetune_only_training: TrainingSpec | None = None
    # Joint runs train several corpora at once: by default they get training.max_steps per corpus, so that each
    # corpus sees about as many batches as in its single-task run.
    stage1_max_steps: int | None = None
    data_root: str | None = None
    source: str = "<comparison>"


def load_comparison_config(path: str | Path) -> ComparisonConfig:
    path = Path(path)
    if not path.is_file():
        raise RunConfigError(f"{path}: no such comparison config")
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    known = {"model", "corpora", "seeds", "methods", "training", "finetune_training", "finetune_only_training",
             "stage1_max_steps", "data_root"}
    unknown = set(values) - known
    if unknown:
        raise RunConfigError(f"{path}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    methods = _checked_methods(values.get("methods", list(METHODS)), f"{path}: methods")
    seeds = _checked_seeds(values.get("seeds", [1, 2]), f"{path}: seeds")
    corpora = [build_spec(TaskSpec, task, f"{path}: corpora[{index}]") for index, task in enumerate(values.get("corpora") or [])]
    if len(corpora) < 2:
        raise RunConfigError(f"{path}: corpora: expected at least 2 corpora to compare, got {len(corpora)}")
    data_root = values.get("data_root")
    return ComparisonConfig(
        model=build_model_spec(values.get("model") or {}, f"{path}: model"),
        corpora=corpora,
        seeds=seeds,
        methods=methods,
        training=build_spec(TrainingSpec, values.get("training") or {}, f"{path}: training"),
        finetune_training=build_spec(TrainingSpec, values.get("finetune_training") or {}, f"{path}: finetune_training"),
        finetune_only_training=(build_spec(TrainingSpec, values["finetune_only_training"],
                                           f"{path}: finetune_only_training")
                                if values.get("finetune_only_training") else None),
        stage1_max_steps=values.get("stage1_max_steps"),
        data_root=str((path.parent / data_root).resolve()) if data_root else str(path.parent.resolve()),
        source=str(path),
    )


def override_comparison_config(config: ComparisonConfig, methods: list[str] | None = None,
                               seeds: list[int] | None = None, max_steps: int | None = None) -> ComparisonConfig:
    """The config with command-line overrides applied; `comparison_config.yaml` in the output folder records them."""
    config = copy.deepcopy(config)
    if methods is not None:
        config.methods = _checked_methods(methods, "--methods")
    if seeds is not None:
        config.seeds = _checked_seeds(seeds, "--seeds")
    if max_steps is not None:
        if max_steps < 1:
            raise RunConfigError(f"--max_steps: expected a positive number of steps, got {max_steps}")
        config.training.max_steps = max_steps
    return config


def _checked_methods(methods: Any, where: str) -> list[str]:
    """The methods of a config or of `--methods`: a non-empty list drawn from `METHODS`."""
    if not isinstance(methods, list) or not methods or not set(methods) <= set(METHODS):
        raise RunConfigError(f"{where}: expected some of {list(METHODS)}, got {methods!r}")
    return list(methods)


def _checked_seeds(seeds: Any, where: str) -> list[int]:
    """The seeds of a config or of `--seeds`: a non-empty list of integers."""
    if not isinstance(seeds, list) or not seeds or not all(isinstance(seed, int) for seed in seeds):
        raise RunConfigError(f"{where}: expected a non-empty list of integers, got {seeds!r}")
    return list(seeds)


# ---------------------------------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------------------------------


TrainFunction = Callable[[RunConfig, str], dict]


def _default_train(run_config: RunConfig, output_dir: str) -> dict:
    """Runs (or resumes) one training run and returns its all_results.json; a finished run is read, not redone."""
    from .training import LoopArguments, run_training

    results_file = Path(output_dir) / "all_results.json"
    if results_file.exists():
        return json.loads(results_file.read_text())
    resume = "latest" if find_latest_checkpoint(Path(output_dir)) is not None else None
    return run_training(run_config, LoopArguments(output_dir=output_dir, resume_from_checkpoint=resume)).results


def _run_config(config: ComparisonConfig, tasks: list[TaskSpec], training: TrainingSpec, seed: int,
                model: ModelSpec) -> RunConfig:
    training = copy.deepcopy(training)
    training.seed = seed
    if len(tasks) > 1 and model.init_from is None:  # a joint (stage-1) run
        training.max_steps = config.stage1_max_steps or training.max_steps * len(tasks)
    return RunConfig(model=copy.deepcopy(model), tasks=copy.deepcopy(tasks), training=training,
                     data_root=config.data_root, source=config.source)


def _finetune_model(init_from: str) -> ModelSpec:
    return ModelSpec(init_from=str(Path(init_from).resolve()), keep_only_trained_tasks=True)


def _cell_path(output_dir: Path, method: str, corpus: str, seed: int) -> Path:
    return output_dir / "cells" / method / corpus / f"seed{seed}.json"


def _write_cell(path: Path, method: str, corpus: str, seed: int, results: dict, task_name: str, run_dir: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cell = {"method": method, "corpus": corpus, "seed": seed, "run_dir": run_dir,
            "test": results["test"][task_name], "validation": results["validation"].get(task_name)}
    staging = path.with_suffix(".json.incomplete")
    staging.write_text(json.dumps(cell, indent=2))
    staging.replace(path)


def run_comparison(config: ComparisonConfig, output_dir: str | Path, train: TrainFunction = _default_train,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs every unfinished cell, then writes results.json, results.md and results.png from the cell files."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "comparison_config.yaml").write_text(yaml.safe_dump(comparison_config_to_dict(config), sort_keys=False))
    runs = output_dir / "runs"
    names = [corpus.name for corpus in config.corpora]
    for seed in config.seeds:
        def pending(method: str) -> list[TaskSpec]:
            return [c for c in config.corpora
                    if method in config.methods and not _cell_path(output_dir, method, c.name, seed).exists()]

        for corpus in pending("single_task"):
            run_dir = str(runs / "single_task" / corpus.name / f"seed{seed}")
            log(f"[seed {seed}] single_task {corpus.name}")
            results = train(_run_config(config, [corpus], config.training, seed, config.model), run_dir)
            _write_cell(_cell_path(output_dir, "single_task", corpus.name, seed), "single_task", corpus.name, seed,
                        results, corpus.name, run_dir)
        if pending("multi_task") or pending("hstl"):
            stage1_dir = str(runs / "stage1" / f"seed{seed}")
            log(f"[seed {seed}] stage 1 on {names}")
            stage1 = train(_run_config(config, config.corpora, config.training, seed, config.model), stage1_dir)
            for corpus in pending("multi_task"):
                _write_cell(_cell_path(output_dir, "multi_task", corpus.name, seed), "multi_task", corpus.name, seed,
                            stage1, corpus.name, stage1_dir)
            for corpus in pending("hstl"):
                run_dir = str(runs / "hstl" / corpus.name / f"seed{seed}")
                log(f"[seed {seed}] hstl stage 2 on {corpus.name}")
                results = train(_run_config(config, [corpus], config.finetune_training, seed,
                                            _finetune_model(stage1_dir)), run_dir)
                _write_cell(_cell_path(output_dir, "hstl", corpus.name, seed), "hstl", corpus.name, seed, results,
                            corpus.name, run_dir)
        for corpus in pending("finetune_only"):
            others = [c for c in config.corpora if c.name != corpus.name]
            pretrain_dir = str(runs / "pretrain_without" / corpus.name / f"seed{seed}")
            log(f"[seed {seed}] finetune_only: pretraining without {corpus.name}")
            train(_run_config(config, others, config.training, seed, config.model), pretrain_dir)
            run_dir = str(runs / "finetune_only" / corpus.name / f"seed{seed}")
            log(f"[seed {seed}] finetune_only: fine-tuning on {corpus.name}")
            results = train(_run_config(config, [corpus], config.finetune_only_training or config.training, seed,
                                        _finetune_model(pretrain_dir)), run_dir)
            _write_cell(_cell_path(output_dir, "finetune_only", corpus.name, seed), "finetune_only", corpus.name,
                        seed, results, corpus.name, run_dir)
    summary = summarize(output_dir, config)
    write_reports(summary, output_dir)
    return summary


# ---------------------------------------------------------------------------------------------------------------------
# Table
# ---------------------------------------------------------------------------------------------------------------------


def read_cells(output_dir: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted((Path(output_dir) / "cells").glob("*/*/seed*.json"))]


def summarize(output_dir: Path, config: ComparisonConfig | None = None) -> dict[str, Any]:
    """Mean and standard deviation of test F1 over seeds per (corpus, method), and each method's gain over
    single-task, computed from the cell files only."""
    cells = read_cells(output_dir)
    corpora = [c.name for c in config.corpora] if config else sorted({cell["corpus"] for cell in cells})
    methods = [m for m in METHODS if any(cell["method"] == m for cell in cells)]
    table: dict[str, dict[str, Any]] = {}
    for corpus in corpora:
        table[corpus] = {}
        for method in methods:
            scores = [cell["test"]["f1"] for cell in cells if cell["corpus"] == corpus and cell["method"] == method]
            if scores:
                table[corpus][method] = {
                    "mean": statistics.fmean(scores),
                    "std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                    "n": len(scores),
                    "f1": scores,
                }
        baseline = table[corpus].get("single_task")
        for method, entry in table[corpus].items():
            if baseline is not None and method != "single_task":
                entry["gain_over_single_task"] = entry["mean"] - baseline["mean"]
    return {"methods": methods, "corpora": corpora, "table": table, "num_cells": len(cells)}


def format_markdown(summary: dict[str, Any]) -> str:
    """Test F1 x 100, mean ± std over seeds, gain over single-task in brackets."""
    methods = summary["methods"]
    lines = ["| corpus | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for corpus in summary["corpora"]:
        row = []
        for method in methods:
            entry = summary["table"][corpus].get(method)
            if entry is None:
                row.append("-")
                continue
            text = f"{100 * entry['mean']:.2f} ± {100 * entry['std']:.2f}"
            if "gain_over_single_task" in entry:
                text += f" ({100 * entry['gain_over_single_task']:+.2f})"
            row.append(text)
        lines.append(f"| {corpus} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def write_reports(summary: dict[str, Any], output_dir: Path) -> None:
    output_dir = Path(output_dir)
    (output_dir / "results.json").write_text(json.dumps(summary, indent=2))
    (output_dir / "results.md").write_text(format_markdown(summary))
    try:
        _plot(summary, output_dir / "results.png")
    except ImportError:
        print("matplotlib is not installed: results.png skipped (pip install 'hstl[plot]')")


def _plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora, methods = summary["corpora"], summary["methods"]
    width = 0.8 / max(len(methods), 1)
    figure, axes = plt.subplots(figsize=(1.8 * len(corpora) + 2, 4))
    for index, method in enumerate(methods):
        means = [100 * summary["table"][c].get(method, {}).get("mean", math.nan) for c in corpora]
        stds = [100 * summary["table"][c].get(method, {}).get("std", 0.0) for c in corpora]
        positions = [i + (index - (len(methods) - 1) / 2) * width for i in range(len(corpora))]
        axes.bar(positions, means, width, yerr=stds, capsize=3, label=method)
    axes.set_xticks(range(len(corpora)), corpora, rotation=15)
    axes.set_ylabel("test F1 (mean ± std over seeds)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def comparison_config_to_dict(config: ComparisonConfig) -> dict[str, Any]:
    return {"model": asdict(config.model), "corpora": [asdict(c) for c in config.corpora], "seeds": config.seeds,
            "methods": config.methods, "training": asdict(config.training),
            "finetune_training": asdict(config.finetune_training),
            "finetune_only_training": asdict(config.finetune_only_training) if config.finetune_only_training else None,
            "stage1_max_steps": config.stage1_max_steps,
            "data_root": config.data_root}
