"""Does stage 1 buy data? A corpus left out of stage 1, trained on 10-100 % of its training sentences, either
fine-tuned from the comparison's stage-1 model of the same seed (`from_stage1`) or trained from the plain pretrained
encoder (`plain_encoder`).

The fractions are nested: every run takes the first `ceil(fraction * n)` sentences of one fixed shuffle of the
training set (`hstl.training.load_task_data`'s seeded sample), whatever the seed, so a larger fraction only adds
sentences. Validation and test sets are never capped. Cells are files, as in `hstl.experiments.cells`: finished ones
are skipped, interrupted runs resume from their latest checkpoint, and the cells of the methods in `rerun_unconverged`
that their budget ended (not early stopping) are trained again with a larger budget, as the comparison's are.
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

from ..data import read_split_dir
from ..run_config import ModelSpec, RunConfig, RunConfigError, TaskSpec, TrainingSpec, build_model_spec, build_spec
from .cells import (
    TrainFunction, cell_convergence, cells_folder, default_train, finetune_model, next_budget_round, read_cells,
    read_wall_time, scaled_budget, stage1_run_dir, write_cell_record,
)
from .config import RerunSettings, check_seeds, read_config_file
from .report import mean_over_seeds_text, seed_count_label


METHODS = ("from_stage1", "plain_encoder")


@dataclass
class DataEfficiencyConfig(RerunSettings):
    """The corpus, the fractions, the seeds and the two methods' settings (`training`: from the plain encoder,
    `finetune_training`: from the stage-1 model), and which methods' unconverged cells are rerun."""

    model: ModelSpec = field(default_factory=ModelSpec)
    corpus: TaskSpec | None = None
    fractions: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 1.0])
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    training: TrainingSpec = field(default_factory=TrainingSpec)
    finetune_training: TrainingSpec = field(default_factory=TrainingSpec)
    data_root: str | None = None
    source: str = "<data-efficiency>"

    def __post_init__(self) -> None:
        if self.corpus is None:
            raise ValueError("corpus: expected the corpus left out of stage 1, got none")
        fractions = self.fractions
        if (not isinstance(fractions, list) or not fractions
                or not all(isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f <= 1 for f in fractions)):
            raise ValueError(f"fractions: expected a non-empty list of numbers in (0, 1], got {fractions!r}")
        self.fractions = [float(f) for f in fractions]
        check_seeds(self.seeds, "seeds")
        self.check_reruns(METHODS)


def load_data_efficiency_config(path: str | Path) -> DataEfficiencyConfig:
    path = Path(path)
    values = read_config_file(path, "data-efficiency")
    built = {"model": build_model_spec(values.get("model") or {}, f"{path}: model"),
             "corpus": build_spec(TaskSpec, values.get("corpus") or {}, f"{path}: corpus")}
    built |= {key: build_spec(TrainingSpec, values[key], f"{path}: {key}")
              for key in ("training", "finetune_training") if values.get(key)}
    return build_spec(DataEfficiencyConfig, {key: value for key, value in values.items() if value is not None} | built,
                      str(path))


def _cell_path(cells_dir: Path, method: str, fraction: float, seed: int) -> Path:
    return cells_dir / method / f"{fraction:g}" / f"seed{seed}.json"


def run_data_efficiency(config: DataEfficiencyConfig, output_dir: str | Path, comparison_dir: str | Path,
                        train: TrainFunction = default_train, log: Callable[[str], None] = print,
                        cells_dir: str | Path | None = None, methods: list[str] | None = None) -> dict[str, Any]:
    """Runs every unfinished cell, then writes data_efficiency.{json,md,png}. `comparison_dir` is the output folder
    of the comparison whose stage-1 models (`runs/stage1/seed<k>`) the `from_stage1` runs start from; `cells_dir`
    (default OUTPUT_DIR/cells) is where the finished cells' records go, as in `hstl.experiments.cells.run_comparison`.
    A seed whose cells are all finished needs no stage-1 model; `methods` (default both) runs only some of them, e.g.
    the plain_encoder runs on a machine without stage-1 models. A cell is unfinished when it has no record, or when
    its method is in `rerun_unconverged` and its budget ended it with rounds left (`next_budget_round`)."""
    methods = list(METHODS) if methods is None else methods
    output_dir = Path(output_dir)
    cells_dir = cells_folder(output_dir, cells_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "data_efficiency_config.yaml").write_text(
        yaml.safe_dump(data_efficiency_config_to_dict(config) | {"comparison_dir": str(comparison_dir)}, sort_keys=False))
    num_train = len(_train_sentences(config))

    def budget_round(method: str, fraction: float, seed: int) -> int | None:
        return next_budget_round(_cell_path(cells_dir, method, fraction, seed), method in config.rerun_unconverged,
                                 config.rerun_max_rounds, lambda cell: _convergence(cell, config)["converged"],
                                 first_round=config.rerun_first_round)

    for seed in config.seeds:
        stage1 = stage1_run_dir(comparison_dir, seed)
        if any(budget_round("from_stage1", fraction, seed) is not None for fraction in config.fractions
               if "from_stage1" in methods):
            _check_stage1(stage1, seed, config.corpus.name)
        for fraction in config.fractions:
            for method in methods:
                while (round_ := budget_round(method, fraction, seed)) is not None:
                    _run_cell(config, output_dir, cells_dir, method, fraction, seed, round_, num_train, stage1, train,
                              log)
    summary = summarize_data_efficiency(cells_dir, config)
    write_data_efficiency_reports(summary, output_dir)
    return summary


def _run_cell(config: DataEfficiencyConfig, output_dir: Path, cells_dir: Path, method: str, fraction: float,
              seed: int, budget_round: int, num_train: int, stage1: Path, train: TrainFunction,
              log: Callable[[str], None]) -> None:
    """Trains one cell in its budget round (the config's budget times rerun_budget_factor ** round) and writes it."""
    corpus = copy.deepcopy(config.corpus)
    corpus.max_train_sentences = None if fraction == 1.0 else math.ceil(fraction * num_train)
    run_dir = output_dir / "runs" / method / f"{fraction:g}" / f"seed{seed}" / (
        f"round{budget_round}" if budget_round else "")
    log(f"[seed {seed}] {method} on {fraction:.0%} of {config.corpus.name}" +
        (f" (budget round {budget_round})" if budget_round else ""))
    model = finetune_model(str(stage1)) if method == "from_stage1" else config.model
    training = scaled_budget(config.finetune_training if method == "from_stage1" else config.training,
                             config.rerun_budget_factor ** budget_round)
    training.seed = seed
    run_config = RunConfig(model=copy.deepcopy(model), tasks=[corpus], training=training,
                           data_root=config.data_root, source=config.source)
    results = train(run_config, str(run_dir))
    write_cell_record(_cell_path(cells_dir, method, fraction, seed), {
        "method": method, "fraction": fraction, "seed": seed,
        "train_sentences": corpus.max_train_sentences or num_train, "test": results["test"][corpus.name],
        "completed_steps": results.get("completed_steps"),
        "wall_seconds": (read_wall_time(run_dir) or {}).get("wall_seconds"),
        "convergence": cell_convergence(run_dir, corpus.name, results, training.early_stopping_patience),
        "budget_round": budget_round, "run_dir": str(run_dir)})


def _check_stage1(stage1: Path, seed: int, corpus: str) -> None:
    if not (stage1 / "config.json").is_file():
        raise RunConfigError(f"{stage1}: no finished stage-1 model for seed {seed}; run the comparison first")
    if corpus in [task["name"] for task in json.loads((stage1 / "config.json").read_text())["tasks"]]:
        raise RunConfigError(f"{stage1}: stage 1 trained {corpus}; pick a corpus it left out")


def _train_sentences(config: DataEfficiencyConfig) -> list:
    run_config = RunConfig(model=ModelSpec(), tasks=[config.corpus], data_root=config.data_root, source=config.source)
    return read_split_dir(run_config.resolve_path(config.corpus.data_dir))["train"]


def summarize_data_efficiency(cells_dir: Path, config: DataEfficiencyConfig) -> dict[str, Any]:
    """Test F1 x 100 per fraction and method (per seed, mean, std), and the question in one line: does
    `from_stage1` at the smallest fraction reach 90 % of `plain_encoder` at 100 %?"""
    cells = read_cells(cells_dir)
    curve: dict[str, dict[str, Any]] = {}
    for method in METHODS:
        curve[method] = {}
        for fraction in config.fractions:
            point = sorted((c for c in cells if c["method"] == method and c["fraction"] == fraction),
                           key=lambda c: c["seed"])
            scores = [100 * c["test"]["f1"] for c in point]
            if scores:
                curve[method][f"{fraction:g}"] = {"f1": scores, "mean": statistics.fmean(scores),
                                                  "std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                                                  "seeds": [c["seed"] for c in point],
                                                  "convergence": [_convergence(c, config) for c in point]}
    smallest = f"{min(config.fractions):g}"
    low, full = curve["from_stage1"].get(smallest), curve["plain_encoder"].get("1")
    answer = None if low is None or full is None else {
        "from_stage1_at_smallest": low["mean"], "plain_encoder_at_100": full["mean"],
        "ratio": low["mean"] / full["mean"] if full["mean"] else None,
        "reaches_90_percent": full["mean"] > 0 and low["mean"] >= 0.9 * full["mean"]}
    records = {method: [record for point in points.values() for record in point["convergence"]]
               for method, points in curve.items()}
    return {"corpus": config.corpus.name, "fractions": config.fractions, "curve": curve, "question": answer,
            "num_cells": len(cells),
            "convergence_counts": {method: {"converged": sum(record["converged"] for record in method_records),
                                            "cells": len(method_records)}
                                   for method, method_records in records.items()}}


def _convergence(cell: dict, config: DataEfficiencyConfig) -> dict[str, Any]:
    """How the cell's run ended: its record's `convergence`, or, for a record written before runs recorded their
    stop reason, the reason its steps give: a step budget ends a run at exactly max_steps (the config's budget times
    rerun_budget_factor ** budget round), so fewer steps mean early stopping (`stop_reason_from`: "steps"); a run
    that early stopping ended at its very last step counts as ended by its budget, the cautious reading."""
    record = {"budget_round": cell.get("budget_round", 0)} | (cell.get("convergence") or {})
    if "stop_reason" in record:
        return record | {"stop_reason_from": "record"}
    training = config.finetune_training if cell["method"] == "from_stage1" else config.training
    budget = scaled_budget(training, config.rerun_budget_factor ** record["budget_round"]).max_steps
    stopped_early = (training.num_train_epochs is None and cell.get("completed_steps") is not None
                     and cell["completed_steps"] < budget)
    return record | {"max_steps": budget, "stop_reason": "early_stopping" if stopped_early else "budget",
                     "converged": stopped_early, "stop_reason_from": "steps"}


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
    counts = summary.get("convergence_counts", {})
    lines += ["", "Converged cells (early stopping ended the run, not its budget): " + "; ".join(
        f"{method} {count['converged']} of {count['cells']}" for method, count in counts.items()) + ".", "",
        "| method | share | seed | test F1 | best step | last step | stop reason | converged | budget round |",
        "|---|---|---|---|---|---|---|---|---|"]
    for method, curve in summary["curve"].items():
        for fraction in summary["fractions"]:
            point = curve.get(f"{fraction:g}")
            point = point or {}  # a summary of an older format has no per-seed records
            for seed, f1, record in zip(point.get("seeds", []), point.get("f1", []), point.get("convergence", [])):
                lines.append(f"| {method} | {fraction:.0%} | {seed} | {f1:.2f} | {record.get('best_step', '?')} | "
                             f"{record.get('last_step', '?')} | {record['stop_reason']} | "
                             f"{'yes' if record['converged'] else 'no'} | {record['budget_round']} |")
    return "\n".join(lines) + "\n"


def write_data_efficiency_reports(summary: dict[str, Any], output_dir: Path, name: str = "data_efficiency") -> None:
    """OUTPUT_DIR/NAME.json (the summary), NAME.md (the table) and NAME.png (the curve)."""
    from ..plotting import write_summary_files

    write_summary_files(summary, output_dir, name, format_data_efficiency_markdown(summary), plot_curve)


def plot_curve(summary: dict[str, Any], path: Path) -> None:
    """Test F1 against the share of training sentences, one line per method, with the std over seeds."""
    from ..plotting import import_pyplot

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
    """The config as `data_efficiency_config.yaml` records it beside the runs."""
    values = asdict(config)
    values.pop("source")
    return values
