"""Does stage 1 buy data? A corpus left out of stage 1, trained on 10-100 % of its training sentences, either
fine-tuned from the comparison's stage-1 model of the same seed (`from_stage1`) or trained from the plain pretrained
encoder (`plain_encoder`).

The fractions are nested: every run takes the first `ceil(fraction * n)` sentences of one fixed shuffle of the
training set (`hstl.training.load_task_data`'s seeded sample), whatever the seed, so a larger fraction only adds
sentences. Validation and test sets are never capped. Cells are files, as in `hstl.comparison`: finished ones are
skipped, interrupted runs resume from their latest checkpoint.
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

from .comparison import (
    TrainFunction, _default_train, _finetune_model, cells_folder, mean_over_seeds_text, read_wall_time,
    seed_count_label, stage1_run_dir, validation_convergence,
)
from .data import read_split_dir
from .run_config import ModelSpec, RunConfig, RunConfigError, TaskSpec, TrainingSpec, build_model_spec, build_spec


METHODS = ("from_stage1", "plain_encoder")


@dataclass
class DataEfficiencyConfig:
    """The corpus, the fractions, the seeds and the two methods' settings (`training`: from the plain encoder,
    `finetune_training`: from the stage-1 model)."""

    model: ModelSpec
    corpus: TaskSpec
    fractions: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 1.0])
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    training: TrainingSpec = field(default_factory=TrainingSpec)
    finetune_training: TrainingSpec = field(default_factory=TrainingSpec)
    data_root: str | None = None
    source: str = "<data-efficiency>"


def load_data_efficiency_config(path: str | Path) -> DataEfficiencyConfig:
    path = Path(path)
    if not path.is_file():
        raise RunConfigError(f"{path}: no such data-efficiency config")
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    known = {"model", "corpus", "fractions", "seeds", "training", "finetune_training", "data_root"}
    if set(values) - known:
        raise RunConfigError(f"{path}: unknown key(s) {sorted(set(values) - known)}; known: {sorted(known)}")
    fractions = values.get("fractions", [0.1, 0.25, 0.5, 1.0])
    if (not isinstance(fractions, list) or not fractions
            or not all(isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f <= 1 for f in fractions)):
        raise RunConfigError(f"{path}: fractions: expected a non-empty list of numbers in (0, 1], got {fractions!r}")
    seeds = values.get("seeds", [1, 2, 3])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(seed, int) for seed in seeds):
        raise RunConfigError(f"{path}: seeds: expected a non-empty list of integers, got {seeds!r}")
    data_root = values.get("data_root")
    return DataEfficiencyConfig(
        model=build_model_spec(values.get("model") or {}, f"{path}: model"),
        corpus=build_spec(TaskSpec, values.get("corpus") or {}, f"{path}: corpus"),
        fractions=[float(f) for f in fractions], seeds=seeds,
        training=build_spec(TrainingSpec, values.get("training") or {}, f"{path}: training"),
        finetune_training=build_spec(TrainingSpec, values.get("finetune_training") or {}, f"{path}: finetune_training"),
        data_root=str((path.parent / data_root).resolve()) if data_root else str(path.parent.resolve()),
        source=str(path),
    )


def _cell_path(cells_dir: Path, method: str, fraction: float, seed: int) -> Path:
    return cells_dir / method / f"{fraction:g}" / f"seed{seed}.json"


def run_data_efficiency(config: DataEfficiencyConfig, output_dir: str | Path, comparison_dir: str | Path,
                        train: TrainFunction = _default_train, log: Callable[[str], None] = print,
                        cells_dir: str | Path | None = None, methods: list[str] | None = None) -> dict[str, Any]:
    """Runs every unfinished cell, then writes data_efficiency.{json,md,png}. `comparison_dir` is the output folder
    of the comparison whose stage-1 models (`runs/stage1/seed<k>`) the `from_stage1` runs start from; `cells_dir`
    (default OUTPUT_DIR/cells) is where the finished cells' records go, as in `hstl.comparison.run_comparison`. A
    seed whose cells are all finished needs no stage-1 model; `methods` (default both) runs only some of them, e.g.
    the plain_encoder runs on a machine without stage-1 models."""
    methods = list(METHODS) if methods is None else methods
    output_dir = Path(output_dir)
    cells_dir = cells_folder(output_dir, cells_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "data_efficiency_config.yaml").write_text(
        yaml.safe_dump(data_efficiency_config_to_dict(config) | {"comparison_dir": str(comparison_dir)}, sort_keys=False))
    num_train = len(_train_sentences(config))
    for seed in config.seeds:
        pending = [(fraction, method) for fraction in config.fractions for method in methods
                   if not _cell_path(cells_dir, method, fraction, seed).exists()]
        stage1 = stage1_run_dir(comparison_dir, seed)
        if any(method == "from_stage1" for _, method in pending):
            _check_stage1(stage1, seed, config.corpus.name)
        for fraction, method in pending:
            corpus = copy.deepcopy(config.corpus)
            corpus.max_train_sentences = None if fraction == 1.0 else math.ceil(fraction * num_train)
            run_dir = output_dir / "runs" / method / f"{fraction:g}" / f"seed{seed}"
            log(f"[seed {seed}] {method} on {fraction:.0%} of {config.corpus.name}")
            model = _finetune_model(str(stage1)) if method == "from_stage1" else config.model
            training = copy.deepcopy(config.finetune_training if method == "from_stage1" else config.training)
            training.seed = seed
            run_config = RunConfig(model=copy.deepcopy(model), tasks=[corpus], training=training,
                                   data_root=config.data_root, source=config.source)
            results = train(run_config, str(run_dir))
            _write_cell(_cell_path(cells_dir, method, fraction, seed), {
                "method": method, "fraction": fraction, "seed": seed,
                "train_sentences": corpus.max_train_sentences or num_train, "test": results["test"][corpus.name],
                "completed_steps": results.get("completed_steps"),
                "wall_seconds": (read_wall_time(run_dir) or {}).get("wall_seconds"),
                "convergence": validation_convergence(run_dir, corpus.name)})
    summary = summarize_data_efficiency(cells_dir, config)
    write_data_efficiency_reports(summary, output_dir)
    return summary


def _check_stage1(stage1: Path, seed: int, corpus: str) -> None:
    if not (stage1 / "config.json").is_file():
        raise RunConfigError(f"{stage1}: no finished stage-1 model for seed {seed}; run the comparison first")
    if corpus in [task["name"] for task in json.loads((stage1 / "config.json").read_text())["tasks"]]:
        raise RunConfigError(f"{stage1}: stage 1 trained {corpus}; pick a corpus it left out")


def _train_sentences(config: DataEfficiencyConfig) -> list:
    run_config = RunConfig(model=ModelSpec(), tasks=[config.corpus], data_root=config.data_root, source=config.source)
    return read_split_dir(run_config.resolve_path(config.corpus.data_dir))["train"]


def _write_cell(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".json.incomplete")
    staging.write_text(json.dumps(record, indent=2))
    staging.replace(path)


def summarize_data_efficiency(cells_dir: Path, config: DataEfficiencyConfig) -> dict[str, Any]:
    """Test F1 x 100 per fraction and method (per seed, mean, std), and the question in one line: does
    `from_stage1` at the smallest fraction reach 90 % of `plain_encoder` at 100 %?"""
    cells = [json.loads(path.read_text()) for path in sorted(Path(cells_dir).glob("*/*/seed*.json"))]
    curve: dict[str, dict[str, Any]] = {}
    for method in METHODS:
        curve[method] = {}
        for fraction in config.fractions:
            scores = [100 * c["test"]["f1"] for c in sorted(cells, key=lambda c: c["seed"])
                      if c["method"] == method and c["fraction"] == fraction]
            if scores:
                curve[method][f"{fraction:g}"] = {"f1": scores, "mean": statistics.fmean(scores),
                                                  "std": statistics.stdev(scores) if len(scores) > 1 else 0.0}
    smallest = f"{min(config.fractions):g}"
    low, full = curve["from_stage1"].get(smallest), curve["plain_encoder"].get("1")
    answer = None if low is None or full is None else {
        "from_stage1_at_smallest": low["mean"], "plain_encoder_at_100": full["mean"],
        "ratio": low["mean"] / full["mean"] if full["mean"] else None,
        "reaches_90_percent": full["mean"] > 0 and low["mean"] >= 0.9 * full["mean"]}
    return {"corpus": config.corpus.name, "fractions": config.fractions, "curve": curve, "question": answer,
            "num_cells": len(cells)}


def format_data_efficiency_markdown(summary: dict[str, Any]) -> str:
    lines = [f"Test F1 x 100 on {summary['corpus']} (mean ± std over seeds) by share of its training sentences:", "",
             "| method | " + " | ".join(f"{f:.0%}" for f in summary["fractions"]) + " |",
             "|---|" + "---|" * len(summary["fractions"])]
    points = [point for curve in summary["curve"].values() for point in curve.values()]
    most_seeds = max((len(point["f1"]) for point in points), default=0)
    for method, curve in summary["curve"].items():
        row = [mean_over_seeds_text(p["mean"], p["std"], len(p["f1"]), most_seeds)
               if (p := curve.get(f"{f:g}")) else "-" for f in summary["fractions"]]
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    answer = summary["question"]
    if answer is not None:
        lines += ["", f"from_stage1 at {min(summary['fractions']):.0%}: {answer['from_stage1_at_smallest']:.2f}; "
                      f"plain_encoder at 100%: {answer['plain_encoder_at_100']:.2f}; reaches 90%: "
                      f"{'yes' if answer['reaches_90_percent'] else 'no'}"]
    return "\n".join(lines) + "\n"


def write_data_efficiency_reports(summary: dict[str, Any], output_dir: Path, name: str = "data_efficiency") -> None:
    """OUTPUT_DIR/NAME.json (the summary), NAME.md (the table) and NAME.png (the curve)."""
    from .plotting import write_summary_files

    write_summary_files(summary, output_dir, name, format_data_efficiency_markdown(summary), _plot_curve)


def _plot_curve(summary: dict[str, Any], path: Path) -> None:
    """Test F1 against the share of training sentences, one line per method, with the std over seeds."""
    from .plotting import import_pyplot

    plt = import_pyplot()
    figure, axes = plt.subplots(figsize=(5, 3.5))
    for method, points in summary["curve"].items():
        fractions = [f for f in summary["fractions"] if f"{f:g}" in points]
        axes.errorbar([100 * f for f in fractions], [points[f"{f:g}"]["mean"] for f in fractions],
                      yerr=[points[f"{f:g}"]["std"] for f in fractions], marker="o", capsize=3,
                      label=seed_count_label(method, [len(point["f1"]) for point in points.values()]))
    axes.set_xlabel(f"% of {summary['corpus']} training sentences")
    axes.set_ylabel("test F1 x 100 (mean ± std over seeds)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def data_efficiency_config_to_dict(config: DataEfficiencyConfig) -> dict[str, Any]:
    return {"model": asdict(config.model), "corpus": asdict(config.corpus), "fractions": config.fractions,
            "seeds": config.seeds, "training": asdict(config.training),
            "finetune_training": asdict(config.finetune_training), "data_root": config.data_root}
