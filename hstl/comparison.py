"""The paper's comparison, runnable on any corpora: single-task vs multi-task vs fine-tuning only vs HSTL.

For each seed:
- single_task:   encoder + CRF trained on the target corpus alone (the paper's XLNet-CRF baseline);
- multi_task:    stage 1 on all corpora, evaluated with each corpus's head;
- finetune_only: stage 1 on all corpora *but* the target, then fine-tuned on the target (no joint stage); the
                 target's head is new, so this stage trains like a single-task run (`training`, or
                 `finetune_only_training` when given), only from the pretrained encoder;
- hstl:          stage 1 on all corpora, then fine-tuned on the target (stage 2).

Every training run goes through `hstl.training.run_training`. A cell (method, corpus, seed) is finished when its
`result.json` exists; finished cells are never redone, interrupted runs resume from their latest checkpoint (so a kill
loses at most `checkpointing_steps` steps of the run it hits), and the table is computed from the result files alone.

Only `targets` (default: every corpus) get cells; the other corpora take part in stage 1 only. Each cell keeps its
test F1, its steps, its wall time and its per-sentence test counts, from which the summary draws a paired bootstrap
test of HSTL against single-task per target and seed (`hstl.bootstrap`).
"""

from __future__ import annotations

import copy
import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from .bootstrap import paired_bootstrap, sentence_counts
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


METHODS = ("single_task", "multi_task", "finetune_only", "hstl", "single_task_matched")
# A config without `methods` runs these; the compute-matched control (as long as stage 1 and stage 2 together) is asked
# for by name.
DEFAULT_METHODS = ("single_task", "multi_task", "finetune_only", "hstl")


@dataclass
class ComparisonConfig:
    """What to compare: corpora (as tasks), seeds, methods, the model, stage-1 and stage-2 training settings."""

    model: ModelSpec
    corpora: list[TaskSpec]
    seeds: list[int] = field(default_factory=lambda: [1, 2])
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    training: TrainingSpec = field(default_factory=TrainingSpec)  # stage 1 and single-task runs
    finetune_training: TrainingSpec = field(default_factory=TrainingSpec)  # stage 2 of HSTL
    # Stage 2 of finetune_only. Its target head (and, for a new family, its family layer) starts untrained, unlike
    # HSTL's, so by default it trains like a single-task run (`training`), only from the pretrained encoder.
    finetune_only_training: TrainingSpec | None = None
    # Joint runs train several corpora at once: by default they get training.max_steps per corpus, so that each
    # corpus sees about as many batches as in its single-task run.
    stage1_max_steps: int | None = None
    # Settings of the joint runs (stage 1, and finetune_only's pretraining) when they differ from `training`, e.g. a
    # joint budget with temperature sampling and rarer evaluations; its max_steps is then used as it is.
    stage1_training: TrainingSpec | None = None
    # Corpora that get cells (default: all); the others are trained in stage 1 only.
    targets: list[str] | None = None
    # finetune_only costs one stage 1 per target and seed: run it on these targets and seeds only (default: all).
    finetune_only_targets: list[str] | None = None
    finetune_only_seeds: list[int] | None = None
    # single_task_matched runs on these targets (default: all): a single-task run given as many optimizer steps as
    # HSTL's stage 1 plus its stage 2 on the target (same seed), with no early stopping.
    matched_targets: list[str] | None = None
    # Methods whose cells are rerun until converged: a cell that its budget ended (not early stopping) is trained
    # again from scratch with its budget multiplied by `rerun_budget_factor` per round, up to `rerun_max_rounds`.
    rerun_unconverged: list[str] = field(default_factory=list)
    rerun_budget_factor: int = 3
    rerun_max_rounds: int = 2
    bootstrap_samples: int = 10_000
    data_root: str | None = None
    source: str = "<comparison>"

    def target_corpora(self) -> list[TaskSpec]:
        return [c for c in self.corpora if self.targets is None or c.name in self.targets]


def load_comparison_config(path: str | Path) -> ComparisonConfig:
    path = Path(path)
    if not path.is_file():
        raise RunConfigError(f"{path}: no such comparison config")
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    known = {"model", "corpora", "seeds", "methods", "training", "finetune_training", "finetune_only_training",
             "stage1_max_steps", "stage1_training", "targets", "finetune_only_targets", "finetune_only_seeds",
             "matched_targets", "rerun_unconverged", "rerun_budget_factor", "rerun_max_rounds",
             "bootstrap_samples", "data_root"}
    unknown = set(values) - known
    if unknown:
        raise RunConfigError(f"{path}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    methods = _checked_methods(values.get("methods", list(DEFAULT_METHODS)), f"{path}: methods")
    seeds = _checked_seeds(values.get("seeds", [1, 2]), f"{path}: seeds")
    corpora = [build_spec(TaskSpec, task, f"{path}: corpora[{index}]") for index, task in enumerate(values.get("corpora") or [])]
    if len(corpora) < 2:
        raise RunConfigError(f"{path}: corpora: expected at least 2 corpora to compare, got {len(corpora)}")
    data_root = values.get("data_root")
    names = [corpus.name for corpus in corpora]
    targets = _checked_names(values.get("targets"), names, f"{path}: targets")
    finetune_only_targets = _checked_names(values.get("finetune_only_targets"), targets or names,
                                           f"{path}: finetune_only_targets")
    if values.get("stage1_training") and values.get("stage1_max_steps"):
        raise RunConfigError(f"{path}: stage1_max_steps: expected it only without stage1_training (whose max_steps "
                             f"counts), got both")
    matched_targets = _checked_names(values.get("matched_targets"), targets or names, f"{path}: matched_targets")
    rerun = values.get("rerun_unconverged", [])
    if rerun:
        rerun = _checked_methods(rerun, f"{path}: rerun_unconverged")
    finetune_only_seeds = values.get("finetune_only_seeds")
    if finetune_only_seeds is not None:
        finetune_only_seeds = _checked_seeds(finetune_only_seeds, f"{path}: finetune_only_seeds")
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
        stage1_training=(build_spec(TrainingSpec, values["stage1_training"], f"{path}: stage1_training")
                         if values.get("stage1_training") else None),
        targets=targets,
        finetune_only_targets=finetune_only_targets,
        finetune_only_seeds=finetune_only_seeds,
        matched_targets=matched_targets,
        rerun_unconverged=rerun,
        rerun_budget_factor=_coerce_positive(values.get("rerun_budget_factor", 3), f"{path}: rerun_budget_factor"),
        rerun_max_rounds=_coerce_positive(values.get("rerun_max_rounds", 2), f"{path}: rerun_max_rounds"),
        bootstrap_samples=_coerce_positive(values.get("bootstrap_samples", 10_000), f"{path}: bootstrap_samples"),
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
        config.training.num_train_epochs = None
    return config


def _checked_methods(methods: Any, where: str) -> list[str]:
    """The methods of a config or of `--methods`: a non-empty list drawn from `METHODS`."""
    if not isinstance(methods, list) or not methods or not set(methods) <= set(METHODS):
        raise RunConfigError(f"{where}: expected some of {list(METHODS)}, got {methods!r}")
    return list(methods)


def _checked_names(names: Any, known: list[str], where: str) -> list[str] | None:
    """`targets`-like lists: None (all), or a non-empty list of known corpus names."""
    if names is None:
        return None
    if not isinstance(names, list) or not names or not set(names) <= set(known):
        raise RunConfigError(f"{where}: expected a non-empty list of corpora from {known}, got {names!r}")
    return list(names)


def _coerce_positive(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RunConfigError(f"{where}: expected a positive integer, got {value!r}")
    return value


def _checked_seeds(seeds: Any, where: str) -> list[int]:
    """The seeds of a config or of `--seeds`: a non-empty list of integers."""
    if not isinstance(seeds, list) or not seeds or not all(isinstance(seed, int) for seed in seeds):
        raise RunConfigError(f"{where}: expected a non-empty list of integers, got {seeds!r}")
    return list(seeds)


# ---------------------------------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------------------------------


TrainFunction = Callable[[RunConfig, str], dict]


TIMING_FILE = "wall_time.json"
"""Beside a run's all_results.json: `{"wall_seconds": s, "resumed": bool}`, the run's wall seconds summed over its
invocations (a killed invocation counts up to its last checkpoint; the steps it did after that are redone and counted
again), as training's all_results.json reports them."""


def _default_train(run_config: RunConfig, output_dir: str) -> dict:
    """Runs (or resumes) one training run and returns its all_results.json; a finished run is read, not redone."""
    from .training import LoopArguments, run_training

    results_file = Path(output_dir) / "all_results.json"
    if results_file.exists():
        return json.loads(results_file.read_text())
    resume = "latest" if find_latest_checkpoint(Path(output_dir)) is not None else None
    results = run_training(run_config, LoopArguments(output_dir=output_dir, resume_from_checkpoint=resume)).results
    timing = {"wall_seconds": results["wall_seconds"], "resumed": resume is not None}
    (Path(output_dir) / TIMING_FILE).write_text(json.dumps(timing))
    return results


def read_wall_time(run_dir: str | Path) -> dict | None:
    path = Path(run_dir) / TIMING_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _run_config(config: ComparisonConfig, tasks: list[TaskSpec], training: TrainingSpec, seed: int,
                model: ModelSpec) -> RunConfig:
    joint = len(tasks) > 1 and model.init_from is None  # a stage-1 run
    if joint and config.stage1_training is not None:
        training = config.stage1_training
    training = copy.deepcopy(training)
    training.seed = seed
    # Without stage1_training, a joint run gets max_steps per corpus; an epoch budget needs no scaling (a joint epoch
    # is one pass over all the corpora's rows).
    if joint and config.stage1_training is None and (config.stage1_max_steps or training.num_train_epochs is None):
        training.max_steps = config.stage1_max_steps or training.max_steps * len(tasks)
        training.num_train_epochs = None
    return RunConfig(model=copy.deepcopy(model), tasks=copy.deepcopy(tasks), training=training,
                     data_root=config.data_root, source=config.source)


def _finetune_model(init_from: str) -> ModelSpec:
    return ModelSpec(init_from=str(Path(init_from).resolve()), keep_only_trained_tasks=True)


def stage1_run_dir(output_dir: str | Path, seed: int) -> Path:
    """Where a comparison in `output_dir` trains (and leaves) the stage-1 model of `seed`."""
    return Path(output_dir) / "runs" / "stage1" / f"seed{seed}"


def cells_folder(output_dir: str | Path, cells_dir: str | Path | None) -> Path:
    """Where a runner keeps its finished cells' records: `cells_dir`, or OUTPUT_DIR/cells."""
    return Path(cells_dir) if cells_dir is not None else Path(output_dir) / "cells"


def _cell_path(cells_dir: Path, method: str, corpus: str, seed: int) -> Path:
    return cells_dir / method / corpus / f"seed{seed}.json"


@dataclass
class _Cell:
    """One finished (method, corpus, seed): where its model is and which runs it took (their wall times add up)."""

    method: str
    corpus: TaskSpec
    seed: int
    run_dir: str
    results: dict
    run_dirs: list[str]
    patience: int | None = None  # the early-stopping patience of the cell's own run
    budget_round: int = 0  # 0: the config's budget; k: rerun with it multiplied by rerun_budget_factor ** k
    extra: dict = field(default_factory=dict)  # method-specific facts (stage-1 steps, the matched budget)


def _write_cell(cells_dir: Path, config: ComparisonConfig, cell: _Cell) -> None:
    path = _cell_path(cells_dir, cell.method, cell.corpus.name, cell.seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = cell.corpus.name
    timings = [read_wall_time(run_dir) for run_dir in cell.run_dirs]
    earlier = json.loads(path.read_text()) if path.is_file() else None  # the round this one reruns
    record = {
        "method": cell.method, "corpus": name, "family": cell.corpus.family, "seed": cell.seed,
        "run_dir": cell.run_dir, "test": cell.results["test"][name],
        "validation": cell.results.get("validation", {}).get(name),
        "completed_steps": cell.results.get("completed_steps"),
        # Own runs first: stage 1 (shared with other cells of the seed) then stage 2, or the single run.
        "wall_seconds": [timing["wall_seconds"] if timing else None for timing in timings],
        "test_counts": _test_counts(config, cell.corpus, cell.run_dir),
        # Kept in the cell, so that a report built where the run folders are gone (a new machine) still has it.
        "convergence": cell_convergence(cell.run_dir, name, cell.results, cell.patience),
        "budget_round": cell.budget_round,
        **cell.extra,
    }
    if earlier is not None and cell.budget_round > earlier.get("budget_round", 0):
        record["previous_rounds"] = earlier.get("previous_rounds", []) + [
            {key: earlier.get(key) for key in ("budget_round", "run_dir", "completed_steps", "convergence")}
            | {"test_f1": earlier["test"]["f1"]}]
    staging = path.with_suffix(".json.incomplete")
    staging.write_text(json.dumps(record))
    staging.replace(path)


def cell_convergence(run_dir: str | Path, corpus: str, results: dict, patience: int | None) -> dict[str, Any]:
    """How a cell's own run ended: its validation curve (`validation_convergence`), its budget (`max_steps`), the
    early-stopping `patience`, and `stop_reason`: "early_stopping" when `patience` evaluations in a row gained no more
    than the threshold, "budget" when the run used all its steps. A cell is `converged` when early stopping ended
    it."""
    stopped_at = results.get("stopped_early_at_step")
    return (validation_convergence(run_dir, corpus) or {}) | {
        "max_steps": results.get("max_steps"), "patience": patience,
        "stop_reason": "budget" if stopped_at is None else "early_stopping", "converged": stopped_at is not None}


def is_converged(cell: dict) -> bool:
    """Whether early stopping ended the cell's own run (see `cell_convergence`); a cell that does not say is not."""
    return bool((cell.get("convergence") or {}).get("converged"))


def _test_counts(config: ComparisonConfig, corpus: TaskSpec, run_dir: str) -> list[list[int]] | None:
    """Per test sentence `(num_correct, num_pred, num_gold)` of the model in `run_dir` with `corpus`'s head, for the
    bootstrap; None when the run left no model folder (a test's stand-in training function)."""
    if not (Path(run_dir) / "config.json").is_file():
        return None
    from .inference import WindowSettings, load_model_and_tokenizer, tag_sentences
    from .corpora import load_task_data

    sentences = load_task_data(RunConfig(model=ModelSpec(), tasks=[corpus], data_root=config.data_root,
                                         source=config.source))[0].splits["test"]
    model, tokenizer = load_model_and_tokenizer(run_dir)
    training = config.training
    settings = WindowSettings(max_length=training.max_length, overlap=training.window_overlap,
                              batch_size=training.eval_batch_size)
    predicted = tag_sentences(model, tokenizer, [s.tokens for s in sentences], [corpus.name],
                              settings=settings)[corpus.name]
    return sentence_counts([s.labels for s in sentences], predicted).tolist()


def run_comparison(config: ComparisonConfig, output_dir: str | Path, train: TrainFunction = _default_train,
                   log: Callable[[str], None] = print, cells_dir: str | Path | None = None) -> dict[str, Any]:
    """Runs every unfinished cell, then writes results.json, results.md and results.png from the cell files.
    `cells_dir` (default OUTPUT_DIR/cells) is where the finished cells' records go: small files that a long
    comparison can keep under version control while its runs (models, checkpoints) stay in `output_dir`."""
    output_dir = Path(output_dir)
    cells_dir = cells_folder(output_dir, cells_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "comparison_config.yaml").write_text(yaml.safe_dump(comparison_config_to_dict(config), sort_keys=False))
    for seed in config.seeds:
        _run_seed(config, output_dir, cells_dir, seed, train, log)
    summary = summarize(output_dir, config, cells_dir)
    write_reports(summary, output_dir)
    return summary


def _run_seed(config: ComparisonConfig, output_dir: Path, cells_dir: Path, seed: int, train: TrainFunction,
              log: Callable[[str], None]) -> None:
    """Every unfinished cell of one seed: single-task runs, stage 1 and its cells, the compute-matched single-task
    runs, then finetune_only. A cell is unfinished when it has no record, or when its method is in
    `rerun_unconverged`, its budget (not early stopping) ended it and rounds are left: it is trained again from
    scratch with a larger budget (`_budget_round`)."""
    runs = output_dir / "runs"
    names = [corpus.name for corpus in config.corpora]

    def pending(method: str, only: list[str] | None = None):
        """Yields (corpus, budget round) of the method's unfinished cells of this seed (of the corpora in `only`, if
        given), looking again after each: the caller writes the cell in between, so a rerun cell comes again until
        it is final."""
        for corpus in config.target_corpora() if method in config.methods else []:
            if only is not None and corpus.name not in only:
                continue
            while (budget_round := _budget_round(config, cells_dir, method, corpus.name, seed)) is not None:
                yield corpus, budget_round

    def any_pending(method: str) -> bool:
        return next(pending(method), None) is not None

    def own_run_dir(method: str, corpus: TaskSpec, budget_round: int) -> str:
        return str(runs / method / corpus.name / f"seed{seed}" / (f"round{budget_round}" if budget_round else ""))

    for corpus, budget_round in pending("single_task"):
        run_dir = own_run_dir("single_task", corpus, budget_round)
        training = scaled_budget(config.training, config.rerun_budget_factor ** budget_round)
        log(f"[seed {seed}] single_task {corpus.name}" + (f" (budget round {budget_round})" if budget_round else ""))
        results = train(_run_config(config, [corpus], training, seed, config.model), run_dir)
        _write_cell(cells_dir, config, _Cell("single_task", corpus, seed, run_dir, results, [run_dir],
                                             training.early_stopping_patience, budget_round))
    if any_pending("multi_task") or any_pending("hstl"):
        stage1_dir = str(stage1_run_dir(output_dir, seed))
        log(f"[seed {seed}] stage 1 on {names}")
        stage1_config = _run_config(config, config.corpora, config.training, seed, config.model)
        stage1 = train(stage1_config, stage1_dir)
        _check_stage1_reproduces(cells_dir, seed, stage1, log)
        for corpus, budget_round in pending("multi_task"):
            _write_cell(cells_dir, config, _Cell("multi_task", corpus, seed, stage1_dir, stage1, [stage1_dir],
                                                 stage1_config.training.early_stopping_patience))
        for corpus, budget_round in pending("hstl"):
            run_dir = own_run_dir("hstl", corpus, budget_round)
            training = scaled_budget(config.finetune_training, config.rerun_budget_factor ** budget_round)
            log(f"[seed {seed}] hstl stage 2 on {corpus.name}" +
                (f" (budget round {budget_round})" if budget_round else ""))
            results = train(_run_config(config, [corpus], training, seed, _finetune_model(stage1_dir)), run_dir)
            _write_cell(cells_dir, config, _Cell("hstl", corpus, seed, run_dir, results, [stage1_dir, run_dir],
                                                 training.early_stopping_patience, budget_round,
                                                 {"stage1_completed_steps": stage1["completed_steps"]}))
    for corpus in config.target_corpora() if "single_task_matched" in config.methods else []:
        if ((config.matched_targets is not None and corpus.name not in config.matched_targets)
                or _cell_path(cells_dir, "single_task_matched", corpus.name, seed).is_file()):
            continue  # never rerun: its budget is fixed and early stopping is off
        budget = matched_budget(config, cells_dir, corpus.name, seed)
        if budget is None:
            log(f"[seed {seed}] single_task_matched {corpus.name}: waits for a final hstl cell of this seed")
            continue
        run_dir = own_run_dir("single_task_matched", corpus, 0)
        training = copy.deepcopy(config.training)
        training.max_steps, training.num_train_epochs, training.early_stopping_patience = sum(budget.values()), None, None
        log(f"[seed {seed}] single_task_matched {corpus.name}: {training.max_steps} steps ({budget})")
        results = train(_run_config(config, [corpus], training, seed, config.model), run_dir)
        _write_cell(cells_dir, config, _Cell("single_task_matched", corpus, seed, run_dir, results, [run_dir],
                                             None, 0, {"matched_to_hstl": budget}))
    if config.finetune_only_seeds is not None and seed not in config.finetune_only_seeds:
        return
    for corpus, budget_round in pending("finetune_only", config.finetune_only_targets):
        others = [c for c in config.corpora if c.name != corpus.name]
        pretrain_dir = str(runs / "pretrain_without" / corpus.name / f"seed{seed}")
        log(f"[seed {seed}] finetune_only: pretraining without {corpus.name}")
        train(_run_config(config, others, config.training, seed, config.model), pretrain_dir)
        run_dir = own_run_dir("finetune_only", corpus, budget_round)
        training = scaled_budget(config.finetune_only_training or config.training,
                                 config.rerun_budget_factor ** budget_round)
        log(f"[seed {seed}] finetune_only: fine-tuning on {corpus.name}")
        results = train(_run_config(config, [corpus], training, seed, _finetune_model(pretrain_dir)), run_dir)
        _write_cell(cells_dir, config, _Cell("finetune_only", corpus, seed, run_dir, results, [pretrain_dir, run_dir],
                                             training.early_stopping_patience, budget_round))


def _budget_round(config: ComparisonConfig, cells_dir: Path, method: str, corpus: str, seed: int) -> int | None:
    """The budget round a cell is to be trained in next: 0 when it has no record, the next round when its method is
    rerun until converged and its record is neither converged nor out of rounds; None when it is final."""
    path = _cell_path(cells_dir, method, corpus, seed)
    if not path.is_file():
        return 0
    cell = json.loads(path.read_text())
    done = cell.get("budget_round", 0)
    if method in config.rerun_unconverged and not is_converged(cell) and done < config.rerun_max_rounds:
        return done + 1
    return None


def scaled_budget(training: TrainingSpec, factor: int) -> TrainingSpec:
    """`training` with its budget (epochs or steps) multiplied by `factor`; everything else as it is."""
    training = copy.deepcopy(training)
    if training.num_train_epochs is not None:
        training.num_train_epochs *= factor
    else:
        training.max_steps *= factor
    return training


def matched_budget(config: ComparisonConfig, cells_dir: Path, corpus: str, seed: int) -> dict[str, int] | None:
    """The optimizer steps HSTL's encoder took for `corpus` and `seed`: its stage 1 plus its stage 2, from the hstl
    cell (its stage-1 steps, or those of the seed's multi_task cell, which is that stage 1). None while the hstl
    cell is missing or still to be rerun. A single-task run given this many steps updates its encoder as often as
    HSTL does and its head at least as often (HSTL's head sees its target in only a share of the stage-1 steps)."""
    path = _cell_path(cells_dir, "hstl", corpus, seed)
    if not path.is_file() or _budget_round(config, cells_dir, "hstl", corpus, seed) is not None:
        return None
    cell = json.loads(path.read_text())
    stage1_steps = cell.get("stage1_completed_steps")
    if stage1_steps is None:
        multi = _cell_path(cells_dir, "multi_task", corpus, seed)
        stage1_steps = json.loads(multi.read_text())["completed_steps"] if multi.is_file() else None
    if stage1_steps is None:
        return None
    return {"stage1_steps": stage1_steps, "stage2_steps": cell["completed_steps"]}


def _check_stage1_reproduces(cells_dir: Path, seed: int, stage1: dict, log: Callable[[str], None]) -> None:
    """A stage 1 retrained for a rerun must be the one the seed's multi_task cells recorded (training is
    deterministic under its seed): says whether its test F1 per corpus matches them."""
    recorded = {cell["corpus"]: cell["test"]["f1"] for cell in read_cells(cells_dir)
                if cell["method"] == "multi_task" and cell["seed"] == seed}
    differ = {name: (f1, stage1["test"][name]["f1"]) for name, f1 in recorded.items()
              if name in stage1.get("test", {}) and stage1["test"][name]["f1"] != f1}
    if recorded:
        log(f"[seed {seed}] stage 1 " + (f"differs from the recorded multi_task cells: {differ}" if differ else
                                         "reproduces the recorded multi_task cells' test F1"))


# ---------------------------------------------------------------------------------------------------------------------
# Table
# ---------------------------------------------------------------------------------------------------------------------


def read_cells(cells_dir: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(Path(cells_dir).glob("*/*/seed*.json"))]


def summarize(output_dir: Path, config: ComparisonConfig | None = None,
              cells_dir: str | Path | None = None) -> dict[str, Any]:
    """Per target corpus: its family, each method's test F1 x 100 per seed, steps, wall seconds, and the paired
    bootstrap of HSTL against single-task per seed; plus the mean ± std table and each method's gain over
    single-task. Computed from the cell files only."""
    cells = read_cells(cells_folder(output_dir, cells_dir))
    if config is not None:
        families = {c.name: c.family for c in config.target_corpora()}
    else:
        families = {cell["corpus"]: cell.get("family") for cell in sorted(cells, key=lambda cell: cell["corpus"])}
    methods = [m for m in METHODS if any(cell["method"] == m for cell in cells)]
    samples = config.bootstrap_samples if config is not None else 10_000
    corpora = {name: _corpus_summary(name, family, methods, cells, samples, Path(output_dir))
               for name, family in families.items()}
    return {"corpora": corpora, "methods": methods, "table": {name: _table_rows(entry) for name, entry in
                                                               corpora.items()}, "num_cells": len(cells)}


def _corpus_summary(name: str, family: str | None, methods: list[str], cells: list[dict],
                    bootstrap_samples: int, output_dir: Path) -> dict[str, Any]:
    """One corpus of the summary: per method, lists in seed order; the bootstrap of HSTL against single-task."""
    by_method = {m: sorted((c for c in cells if c["corpus"] == name and c["method"] == m), key=lambda c: c["seed"])
                 for m in methods}
    by_method = {m: method_cells for m, method_cells in by_method.items() if method_cells}
    entry = {
        "family": family,
        "methods": {m: [100 * c["test"]["f1"] for c in method_cells] for m, method_cells in by_method.items()},
        "seeds": {m: [c["seed"] for c in method_cells] for m, method_cells in by_method.items()},
        "steps": {m: [c.get("completed_steps") for c in method_cells] for m, method_cells in by_method.items()},
        "wall_seconds": {m: [c.get("wall_seconds") for c in method_cells] for m, method_cells in by_method.items()},
        "convergence": {m: [c["convergence"] if "convergence" in c else
                            validation_convergence(_local_run_dir(output_dir, c.get("run_dir")), name)
                            for c in method_cells]
                        for m, method_cells in by_method.items()},
        "bootstrap_hstl_vs_single_task": {},
    }
    single = {c["seed"]: c for c in by_method.get("single_task", [])}
    for cell in by_method.get("hstl", []):
        baseline = single.get(cell["seed"])
        if baseline is not None and cell.get("test_counts") and baseline.get("test_counts"):
            result = paired_bootstrap(np.asarray(cell["test_counts"]), np.asarray(baseline["test_counts"]),
                                      num_samples=bootstrap_samples, seed=cell["seed"])
            entry["bootstrap_hstl_vs_single_task"][str(cell["seed"])] = result.to_dict()
    return entry


def validation_convergence(run_dir: str | Path | None, corpus: str) -> dict[str, Any] | None:
    """How a cell's own run (stage 2, or the single or stage-1 run) ended, from the validation F1 that its
    train_log.jsonl records at each evaluation: `best_step`, the step of the best mean F1 (the checkpoint the run
    kept; for a stage-1 run, the mean over its corpora), the last evaluated step, `best_f1`, the best F1 of `corpus`,
    and `late_gain`, that best minus the best F1 of `corpus` in the first two thirds of the run (None when there were
    no evaluations there). A late gain near 0 says the run had levelled off; a large one, that it was still rising.
    None when the run left no validation scores of `corpus`."""
    path = Path(run_dir) / "train_log.jsonl" if run_dir else None
    if path is None or not path.is_file():
        return None
    curve, means = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line) if line.strip() else {}
        if record.get(f"validation_f1/{corpus}") is not None:
            curve.append((record["step"], record[f"validation_f1/{corpus}"]))
            means.append((record["step"], record.get("validation_f1/mean", record[f"validation_f1/{corpus}"])))
    if not curve:
        return None
    best_step = max(means, key=lambda point: point[1])[0]  # the first of equal bests, as training keeps
    best, last_step = max(score for _, score in curve), curve[-1][0]
    early = [score for step, score in curve if 3 * step <= 2 * last_step]  # the first two thirds, exactly
    return {"best_step": best_step, "last_step": last_step, "best_f1": best,
            "late_gain": best - max(early) if early else None,
            "evaluations_after_best": sum(1 for step, _ in means if step > best_step)}


def _local_run_dir(output_dir: Path, run_dir: str | None) -> Path | None:
    """A cell's run folder as recorded (relative to where the comparison was started, or absolute), or, when that is
    not a folder from here, the same `runs/...` path under `output_dir` (a report built from elsewhere, or a moved
    output folder)."""
    if not run_dir:
        return None
    recorded = Path(run_dir)
    if recorded.is_dir():
        return recorded
    parts = recorded.parts
    for index in range(len(parts) - 1, -1, -1):
        if parts[index] == "runs" and (Path(output_dir, *parts[index:])).is_dir():
            return Path(output_dir, *parts[index:])
    return recorded


def _table_rows(entry: dict[str, Any]) -> dict[str, Any]:
    """Mean and standard deviation over seeds (F1 in [0, 1]) per method, with the gain over single-task: the mean
    difference over the seeds both have (while a comparison runs, a method can have fewer)."""
    rows = {}
    for method, scores in entry["methods"].items():
        f1 = [score / 100 for score in scores]
        rows[method] = {"mean": statistics.fmean(f1), "std": statistics.stdev(f1) if len(f1) > 1 else 0.0,
                        "n": len(f1), "f1": f1}
    if "single_task" not in rows:
        return rows
    seeds = entry["seeds"]
    baseline = dict(zip(seeds["single_task"], rows["single_task"]["f1"]))
    for method, row in rows.items():
        paired = [(f1, baseline[seed]) for seed, f1 in zip(seeds[method], row["f1"]) if seed in baseline]
        if method != "single_task" and paired:
            row["gain_over_single_task"] = statistics.fmean(f1 - base for f1, base in paired)
    return rows


def mean_over_seeds_text(mean: float, std: float, n: int, most_seeds: int) -> str:
    """`mean ± std` over n seeds; one seed has no spread to show, and a count short of the table's most seeds (a
    comparison still running) or a single seed is marked: `55.00 [1 seed]`, `60.00 ± 1.20 [2 seeds]`."""
    text = f"{mean:.2f}" + (f" ± {std:.2f}" if n > 1 else "")
    if n < most_seeds or n == 1:
        text += f" [{n} seed{'s' if n > 1 else ''}]"
    return text


def format_markdown(summary: dict[str, Any]) -> str:
    """Test F1 x 100, mean ± std over seeds, gain over single-task in brackets, and the number of seeds where it is
    not every method's largest (a comparison still running); then the bootstrap tests and the steps and hours of each
    method."""
    methods = summary["methods"]
    most_seeds = max((cell["n"] for rows in summary["table"].values() for cell in rows.values()), default=0)
    lines = ["| corpus | family | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for corpus, entry in summary["corpora"].items():
        row = []
        for method in methods:
            cell = summary["table"][corpus].get(method)
            if cell is None:
                row.append("-")
                continue
            text = mean_over_seeds_text(100 * cell["mean"], 100 * cell["std"], cell["n"], most_seeds)
            if "gain_over_single_task" in cell:
                text += f" ({100 * cell['gain_over_single_task']:+.2f})"
            row.append(text)
        lines.append(f"| {corpus} | {entry['family']} | " + " | ".join(row) + " |")
    tests = [(corpus, seed, result) for corpus, entry in summary["corpora"].items()
             for seed, result in entry["bootstrap_hstl_vs_single_task"].items()]
    if tests:
        lines += ["", "Paired bootstrap over test sentences, HSTL - single-task (F1 x 100):", "",
                  "| corpus | seed | HSTL | single-task | difference | p (two-sided) |", "|---|---|---|---|---|---|"]
        lines += [f"| {corpus} | {seed} | {100 * r['f1_a']:.2f} | {100 * r['f1_b']:.2f} | {100 * r['delta']:+.2f} | "
                  f"{r['p_two_sided']:.4f} |" for corpus, seed, r in tests]
    lines += ["", "Convergence: validation F1 x 100 gained in the last third of each cell's own run (stage 2, or the "
              "single-task or stage-1 run), mean over seeds, and the step of the best checkpoint of the run's last "
              "evaluated step (mean over seeds):", "",
              "| corpus | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for corpus, entry in summary["corpora"].items():
        lines.append(f"| {corpus} | " + " | ".join(_convergence_text(entry.get("convergence", {}).get(method, []))
                                                  for method in methods) + " |")
    lines += ["", "Steps and wall-clock hours per cell (mean over seeds; stage 1 counted in every cell that uses it):",
              "", "| corpus | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for corpus, entry in summary["corpora"].items():
        lines.append(f"| {corpus} | " + " | ".join(_steps_and_hours(entry, method) for method in methods) + " |")
    return "\n".join(lines) + "\n"


def _convergence_text(per_seed: list[dict[str, Any] | None]) -> str:
    known = [seed for seed in per_seed if seed is not None and seed.get("best_step") is not None]
    if not known:
        return "-"
    gains = [seed["late_gain"] for seed in known if seed["late_gain"] is not None]
    gain = f"{100 * statistics.fmean(gains):+.2f}" if gains else "?"
    return (f"{gain}, best at {statistics.fmean(seed['best_step'] for seed in known):.0f} of "
            f"{statistics.fmean(seed['last_step'] for seed in known):.0f}")


def _steps_and_hours(entry: dict[str, Any], method: str) -> str:
    steps = [step for step in entry["steps"].get(method, []) if step is not None]
    seconds = [sum(run or 0.0 for run in runs) for runs in entry["wall_seconds"].get(method, []) if runs]
    if not steps and not seconds:
        return "-"
    step_text = f"{statistics.fmean(steps):.0f} steps" if steps else "? steps"
    return step_text + (f", {statistics.fmean(seconds) / 3600:.2f} h" if seconds else "")


def write_reports(summary: dict[str, Any], output_dir: Path, name: str = "results") -> None:
    """OUTPUT_DIR/NAME.json (the summary), NAME.md (its tables) and NAME.png (test F1 per corpus and method)."""
    from .plotting import write_summary_files

    write_summary_files(summary, output_dir, name, format_markdown(summary), _plot)


def _plot(summary: dict[str, Any], path: Path) -> None:
    """Test F1 per corpus, one bar per method, with the standard deviation over seeds (the package's bar chart)."""
    from .plotting import grouped_bar_chart

    corpora, methods = list(summary["corpora"]), summary["methods"]
    cells = {method: [summary["table"][corpus].get(method, {}) for corpus in corpora] for method in methods}
    labels = legend_labels(summary)
    grouped_bar_chart(path, corpora, {labels[method]: [100 * cell.get("mean", math.nan) for cell in row]
                                      for method, row in cells.items()},
                      errors={labels[method]: [100 * cell.get("std", 0.0) for cell in row]
                              for method, row in cells.items()},
                      ylabel="test F1 (mean ± std over seeds)")


def legend_labels(summary: dict[str, Any]) -> dict[str, str]:
    """Each method's name in the chart, with its seed count (`seed_count_label`), so that a bar from fewer seeds says
    so as its table cell does."""
    return {method: seed_count_label(method, [rows[method]["n"] for rows in summary["table"].values()
                                              if method in rows]) for method in summary["methods"]}


def seed_count_label(name: str, counts: list[int]) -> str:
    """`hstl (3 seeds)`, or `hstl (1-2 seeds)` when its points (corpora, fractions) have different seed counts; the
    bare name without points."""
    counts = sorted(set(counts))
    if not counts:
        return name
    span = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"{name} ({span} seed{'' if counts == [1] else 's'})"


def comparison_config_to_dict(config: ComparisonConfig) -> dict[str, Any]:
    return {"model": asdict(config.model), "corpora": [asdict(c) for c in config.corpora], "seeds": config.seeds,
            "methods": config.methods, "training": asdict(config.training),
            "finetune_training": asdict(config.finetune_training),
            "finetune_only_training": asdict(config.finetune_only_training) if config.finetune_only_training else None,
            "stage1_max_steps": config.stage1_max_steps,
            "stage1_training": asdict(config.stage1_training) if config.stage1_training else None,
            "targets": config.targets,
            "finetune_only_targets": config.finetune_only_targets, "finetune_only_seeds": config.finetune_only_seeds,
            "bootstrap_samples": config.bootstrap_samples, "data_root": config.data_root}
