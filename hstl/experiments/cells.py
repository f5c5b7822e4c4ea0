"""Running a comparison's cells. A cell is one (method, corpus, seed); every training run goes through
`hstl.training.run_training`. A cell is finished when its record (`CELLS_DIR/METHOD/CORPUS/seed<k>.json`) exists;
finished cells are never redone, interrupted runs resume from their latest checkpoint (so a kill loses at most
`checkpointing_steps` steps of the run it hits), and the tables are computed from the records alone
(`hstl.experiments.statistics.summarize`).

Only `targets` (default: every corpus) get cells; the other corpora take part in stage 1 only. Each record keeps the
cell's test F1, its steps, its wall time, its per-sentence test counts (for the bootstrap) and how its run ended
(`cell_convergence`): a cell is converged when early stopping ended it, not its budget. The methods in
`rerun_unconverged` are trained again with a larger budget until they are (`next_budget_round`), and
`single_task_matched` gets HSTL's stage-1 plus stage-2 steps (`matched_budget`).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from ..bootstrap import sentence_counts
from ..checkpointing import find_latest_checkpoint
from ..run_config import ModelSpec, RunConfig, TaskSpec, TrainingSpec
from .config import ComparisonConfig, comparison_config_to_dict

TrainFunction = Callable[[RunConfig, str], dict]


TIMING_FILE = "wall_time.json"
"""Beside a run's all_results.json: `{"wall_seconds": s, "resumed": bool}`, the run's wall seconds summed over its
invocations (a killed invocation counts up to its last checkpoint; the steps it did after that are redone and counted
again), as training's all_results.json reports them."""


def default_train(run_config: RunConfig, output_dir: str) -> dict:
    """Runs (or resumes) one training run and returns its all_results.json; a finished run is read, not redone."""
    from ..training import LoopArguments, run_training

    results_file = Path(output_dir) / "all_results.json"
    if results_file.exists():
        return json.loads(results_file.read_text())
    resume = "latest" if find_latest_checkpoint(Path(output_dir)) is not None else None
    # Without a checkpoint, what an earlier invocation left (a best model, a log) is not a run to keep: start afresh.
    results = run_training(run_config, LoopArguments(output_dir=output_dir, resume_from_checkpoint=resume,
                                                     overwrite_output_dir=resume is None)).results
    timing = {"wall_seconds": results["wall_seconds"], "resumed": resume is not None}
    (Path(output_dir) / TIMING_FILE).write_text(json.dumps(timing))
    return results


def read_wall_time(run_dir: str | Path) -> dict | None:
    path = Path(run_dir) / TIMING_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def run_config_for(config: ComparisonConfig, tasks: list[TaskSpec], training: TrainingSpec, seed: int,
                   model: ModelSpec) -> RunConfig:
    """The run config of one run of the comparison: `tasks` trained from `model` with `training` under `seed`; a
    joint run (several tasks from the pretrained encoder) takes stage1_training, or the per-corpus budget."""
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


def finetune_model(init_from: str) -> ModelSpec:
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
    name = cell.corpus.name
    timings = [read_wall_time(run_dir) for run_dir in cell.run_dirs]
    record = {
        "method": cell.method, "corpus": name, "family": cell.corpus.family, "seed": cell.seed,
        "run_dir": cell.run_dir, "test": cell.results["test"][name],
        "validation": cell.results.get("validation", {}).get(name),
        "completed_steps": cell.results.get("completed_steps"),
        # Own runs first: stage 1 (shared with other cells of the seed) then stage 2, or the single run.
        "wall_seconds": [timing["wall_seconds"] if timing else None for timing in timings],
        **_test_counts(config, cell.corpus, cell.run_dir),
        # Kept in the cell, so that a report built where the run folders are gone (a new machine) still has it.
        "convergence": cell_convergence(cell.run_dir, name, cell.results, cell.patience),
        "budget_round": cell.budget_round,
        **cell.extra,
    }
    write_cell_record(_cell_path(cells_dir, cell.method, name, cell.seed), record)


def write_cell_record(path: Path, record: dict[str, Any]) -> None:
    """Writes a finished cell's record atomically (a kill leaves the old record or the new one, never half of one).
    A record of a later budget round than the one it replaces keeps the earlier rounds' facts in `previous_rounds`
    (budget round, run folder, steps, convergence and test F1 of each)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    earlier = json.loads(path.read_text()) if path.is_file() else None  # the round this one reruns
    if earlier is not None and record.get("budget_round", 0) > earlier.get("budget_round", 0):
        record["previous_rounds"] = earlier.get("previous_rounds", []) + [
            {"budget_round": earlier.get("budget_round", 0)}  # a record from before budget rounds is round 0
            | {key: earlier.get(key) for key in ("run_dir", "completed_steps", "convergence")}
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


def _test_counts(config: ComparisonConfig, corpus: TaskSpec, run_dir: str) -> dict[str, Any]:
    """`test_counts`: per test sentence `(num_correct, num_pred, num_gold)` of the model in `run_dir` with
    `corpus`'s head, for the bootstrap; and `test_document_starts`, the indices of the test sentences that a
    `-DOCSTART-` line stood before, when the corpus marks its documents (for the document bootstrap). `test_counts`
    is None when the run left no model folder (a test's stand-in training function)."""
    if not (Path(run_dir) / "config.json").is_file():
        return {"test_counts": None}
    from ..corpora import load_task_data
    from ..inference import WindowSettings, load_model_and_tokenizer, tag_sentences

    sentences = load_task_data(RunConfig(model=ModelSpec(), tasks=[corpus], data_root=config.data_root,
                                         source=config.source))[0].splits["test"]
    model, tokenizer = load_model_and_tokenizer(run_dir)
    training = config.training
    settings = WindowSettings(max_length=training.max_length, overlap=training.window_overlap,
                              batch_size=training.eval_batch_size)
    predicted = tag_sentences(model, tokenizer, [s.tokens for s in sentences], [corpus.name],
                              settings=settings)[corpus.name]
    record = {"test_counts": sentence_counts([s.labels for s in sentences], predicted).tolist()}
    starts = [index for index, sentence in enumerate(sentences) if getattr(sentence, "starts_document", False)]
    return record | ({"test_document_starts": starts} if starts else {})


def run_comparison(config: ComparisonConfig, output_dir: str | Path, train: TrainFunction = default_train,
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
    from .report import write_reports  # the report reads cells: imported here, where the cells are written
    from .statistics import summarize

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
        results = train(run_config_for(config, [corpus], training, seed, config.model), run_dir)
        _write_cell(cells_dir, config, _Cell("single_task", corpus, seed, run_dir, results, [run_dir],
                                             training.early_stopping_patience, budget_round))
    if any_pending("multi_task") or any_pending("hstl"):
        stage1_dir = str(stage1_run_dir(output_dir, seed))
        log(f"[seed {seed}] stage 1 on {names}")
        stage1_config = run_config_for(config, config.corpora, config.training, seed, config.model)
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
            results = train(run_config_for(config, [corpus], training, seed, finetune_model(stage1_dir)), run_dir)
            _write_cell(cells_dir, config, _Cell("hstl", corpus, seed, run_dir, results, [stage1_dir, run_dir],
                                                 training.early_stopping_patience, budget_round,
                                                 {"stage1_completed_steps": stage1["completed_steps"],
                                                  "stage1_test_f1": stage1["test"][corpus.name]["f1"]}))
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
        results = train(run_config_for(config, [corpus], training, seed, config.model), run_dir)
        _write_cell(cells_dir, config, _Cell("single_task_matched", corpus, seed, run_dir, results, [run_dir],
                                             None, 0, {"matched_to_hstl": budget}))
    if config.finetune_only_seeds is not None and seed not in config.finetune_only_seeds:
        return
    for corpus, budget_round in pending("finetune_only", config.finetune_only_targets):
        others = [c for c in config.corpora if c.name != corpus.name]
        pretrain_dir = str(runs / "pretrain_without" / corpus.name / f"seed{seed}")
        log(f"[seed {seed}] finetune_only: pretraining without {corpus.name}")
        train(run_config_for(config, others, config.training, seed, config.model), pretrain_dir)
        run_dir = own_run_dir("finetune_only", corpus, budget_round)
        training = scaled_budget(config.finetune_only_training or config.training,
                                 config.rerun_budget_factor ** budget_round)
        log(f"[seed {seed}] finetune_only: fine-tuning on {corpus.name}")
        results = train(run_config_for(config, [corpus], training, seed, finetune_model(pretrain_dir)), run_dir)
        _write_cell(cells_dir, config, _Cell("finetune_only", corpus, seed, run_dir, results, [pretrain_dir, run_dir],
                                             training.early_stopping_patience, budget_round))


def _budget_round(config: ComparisonConfig, cells_dir: Path, method: str, corpus: str, seed: int) -> int | None:
    return next_budget_round(_cell_path(cells_dir, method, corpus, seed), method in config.rerun_unconverged,
                             config.rerun_max_rounds, first_round=config.rerun_first_round)


def next_budget_round(path: Path, rerun: bool, max_rounds: int,
                      converged: Callable[[dict], bool] | None = None, first_round: int = 1) -> int | None:
    """The budget round the cell recorded at `path` is to be trained in next: 0 when it has no record, the next
    round (at least `first_round`) when its method is rerun until converged (`rerun`) and its record is neither
    converged (`converged`, default `is_converged`) nor out of rounds; None when it is final."""
    if not path.is_file():
        return 0
    cell = json.loads(path.read_text())
    done = cell.get("budget_round", 0)
    if rerun and not (converged or is_converged)(cell) and done < max_rounds:
        return max(done + 1, first_round)
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
    """Says whether a stage 1 retrained for a rerun matches the seed's recorded multi_task cells, test F1 per corpus.
    Training is deterministic under its seed for one version of the code; a change of its arithmetic (equal up to
    rounding) makes the retrained stage 1 drift, which each HSTL cell's `stage1_test_f1` records."""
    recorded = {cell["corpus"]: cell["test"]["f1"] for cell in read_cells(cells_dir)
                if cell["method"] == "multi_task" and cell["seed"] == seed}
    differ = {name: (f1, stage1["test"][name]["f1"]) for name, f1 in recorded.items()
              if name in stage1.get("test", {}) and stage1["test"][name]["f1"] != f1}
    if recorded:
        log(f"[seed {seed}] stage 1 " + (f"differs from the recorded multi_task cells: {differ}" if differ else
                                         "reproduces the recorded multi_task cells' test F1"))


def read_cells(cells_dir: Path) -> list[dict]:
    """Every cell record under `cells_dir` (`METHOD/NAME/seed<k>.json`), in path order."""
    return [json.loads(path.read_text()) for path in sorted(Path(cells_dir).glob("*/*/seed*.json"))]


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


def local_run_dir(output_dir: Path, run_dir: str | None) -> Path | None:
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


