"""The training loop shared by `train.py` (stage 1, multi-task) and `finetune.py` (stage 2, one target corpus).

Everything a run needs is built here from a `RunConfig`: task data, tokenizer, model, tokenized datasets, sampler,
optimizer, scheduler; then a plain Accelerate loop with evaluation, best-model selection, atomic checkpoints and exact
resumption. The scripts only parse arguments and call `run_training`.
"""

from __future__ import annotations

import gc
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from .checkpointing import (
    damaged_checkpoint,
    find_latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    read_trainer_state,
    save_checkpoint,
    save_model_folder,
)
from configuration_hstl import HSTLConfig
from modeling_hstl import HSTLModel
from .corpora import TaskData, load_task_data
from .errors import CheckpointError, NonFiniteError, RunConfigError, disk_full_error, first_line, is_disk_full
from .fingerprint import changes, flatten
from .locking import OutputLock, lock_for_all_processes
from .early_stopping import EarlyStopping
from .evaluation import score_head
from .inference import build_task_dataset
from .inference.feed import FeedSettings
from .inference.loading import WindowSettings
from .modelcard import write_model_card
from .run_config import ModelSpec, RunConfig, TrainingSpec, resolve_model_source
from .sampling import MultiTaskBatchSampler


logger = get_logger(__name__)


@dataclass
class TrainingOutcome:
    """What a run leaves: where the model is, its best validation score and the final per-task results."""

    output_dir: str
    completed_steps: int
    best_score: float | None
    results: dict[str, Any]


# ---------------------------------------------------------------------------------------------------------------------
# Tokenizer and model
# ---------------------------------------------------------------------------------------------------------------------


def build_tokenizer(run_config: RunConfig, tasks: list[TaskData], output_dir: Path, accelerator: Accelerator):
    """The tokenizer of `model.tokenizer`, of the pretrained encoder or model, or one trained on the training text."""
    from .tokenization import load_tokenizer, train_xlnet_tokenizer

    spec = run_config.model
    source = spec.tokenizer or (init_from_folder(spec) if spec.init_from else None) or spec.encoder
    if source is not None and source != "train":
        key = "model.tokenizer" if spec.tokenizer else "model.init_from" if spec.init_from else "model.encoder"
        try:
            return load_tokenizer(resolve_model_source(source))
        except (OSError, ValueError) as error:  # FileNotFoundError too: a missing folder, an offline Hub id
            raise RunConfigError(f"{run_config.source}: {key}: expected a fast tokenizer, got {source!r}: "
                                 f"{first_line(error)}") from None
    tokenizer_dir = output_dir / "tokenizer"
    # Train once on the main process; the others wait, then load the same files.
    with accelerator.main_process_first():
        if accelerator.is_main_process and not (tokenizer_dir / "tokenizer_config.json").exists():
            train_sentences = [sentence.tokens for task in tasks for sentence in task.splits["train"]]
            train_xlnet_tokenizer(train_sentences, tokenizer_dir, vocab_size=spec.tokenizer_vocab_size,
                                  seed=run_config.training.seed)
        return load_tokenizer(str(tokenizer_dir))


def init_from_folder(spec: ModelSpec) -> str:
    """The folder of `model.init_from`: a local folder, or the Hub model at `init_from_revision` from the cache."""
    from .hub import resolve_model

    return str(resolve_model(spec.init_from, spec.init_from_revision, argument="model.init_from",
                             revision_argument="model.init_from_revision"))


def _task_dicts(tasks: list[TaskData]) -> list[dict]:
    return [{"name": task.name, "labels": task.labels, "family": task.family} for task in tasks]


def _encoder_config_from_scratch(spec_config: dict, tokenizer) -> dict:
    encoder_config = dict(spec_config)
    encoder_config.setdefault("vocab_size", len(tokenizer))
    if tokenizer.pad_token_id is not None:
        encoder_config.setdefault("pad_token_id", tokenizer.pad_token_id)
    return encoder_config


def build_model(run_config: RunConfig, tasks: list[TaskData], tokenizer) -> HSTLModel:
    """A new model (pretrained or scratch encoder), or `init_from` extended with heads for tasks it lacks."""
    spec, training = run_config.model, run_config.training
    window = {"window_max_length": training.max_length, "window_overlap": training.window_overlap}
    hierarchy = spec.hstl_config | window  # the model section's other HSTLConfig arguments, and the training windows
    entity_types = hierarchy.pop("entity_types", None)  # set on the model's tasks below, whichever way it is built
    try:
        HSTLConfig(**hierarchy)  # its own checks, before an encoder is loaded
    except ValueError as error:
        raise RunConfigError(f"{run_config.source}: model: {error}") from None
    model = _new_or_extended_model(run_config, tasks, tokenizer, hierarchy, window)
    if entity_types:
        try:
            model.config.update_entity_types(entity_types)
        except ValueError as error:
            raise RunConfigError(f"{run_config.source}: model.{error}") from None
    return model


def _new_or_extended_model(run_config: RunConfig, tasks: list[TaskData], tokenizer, hierarchy: dict[str, Any],
                           window: dict[str, int]) -> HSTLModel:
    spec = run_config.model
    if spec.init_from is not None:
        model = HSTLModel.from_pretrained(init_from_folder(spec))
        for key, value in window.items():  # the folder will say how it was trained last
            setattr(model.config, key, value)
        for task in tasks:
            if task.name in model.config.task_names:
                check_task_labels(model.config, task, spec.init_from)
            else:
                model.add_task(task.name, task.labels, task.family)
        return model
    if spec.encoder is not None:
        return _from_encoder(run_config, tasks, hierarchy)
    config = HSTLConfig(
        encoder_config=_encoder_config_from_scratch(spec.encoder_config, tokenizer), tasks=_task_dicts(tasks), **hierarchy
    )
    return HSTLModel(config)


def _from_encoder(run_config: RunConfig, tasks: list[TaskData], hierarchy: dict[str, Any]) -> HSTLModel:
    """A new model on the pretrained encoder `model.encoder`; one line naming it when it cannot be loaded."""
    from .hub import check_safetensors_weights

    encoder = resolve_model_source(run_config.model.encoder)
    check_safetensors_weights(Path(encoder), f"{run_config.source}: model.encoder")
    try:
        return HSTLModel.from_encoder(encoder, _task_dicts(tasks), **hierarchy)
    except (OSError, ValueError) as error:  # no such folder, a folder without a model, a Hub id not in the cache
        raise RunConfigError(f"{run_config.source}: model.encoder: expected a pretrained encoder (a folder holding "
                             f"config.json and safetensors weights, or a Hub id in the Hugging Face cache), got "
                             f"{run_config.model.encoder!r}: {first_line(error)}") from None


def check_task_labels(config: HSTLConfig, task: TaskData, model_source: str) -> None:
    """A known task's corpus must use labels the model's head knows; the message shows both lists."""
    head_labels = config.task(task.name)["labels"]
    unknown = sorted(set(task.labels) - set(head_labels))
    if unknown:
        raise RunConfigError(
            f"task {task.name}: the model at {model_source} has a head with labels {head_labels}, but the corpus has "
            f"labels {unknown} it does not know; give the task a new name to train a new head"
        )
    task.labels = list(head_labels)  # the head's ids are the ones that count


def apply_freeze(model: HSTLModel, freeze: list[str]) -> None:
    """Freezes levels by name: "embeddings" (encoder input embeddings), "encoder", "family", "heads"."""
    frozen_modules = {
        "embeddings": [model.encoder.get_input_embeddings()],
        "encoder": [model.encoder],
        "family": [model.family_layers],
        "heads": [model.heads],
    }
    for level in freeze:
        for module in frozen_modules[level]:
            for parameter in module.parameters():
                parameter.requires_grad_(False)


def build_optimizer(model: HSTLModel, run_config: RunConfig) -> torch.optim.AdamW:
    """AdamW with the encoder at `encoder_learning_rate` and family layers, heads and CRF transitions at
    `head_learning_rate`; biases, norms and CRF transitions get no weight decay."""
    training = run_config.training
    groups: dict[tuple[str, bool], list[torch.nn.Parameter]] = {}
    trainable = [(name, parameter) for name, parameter in model.named_parameters() if parameter.requires_grad]
    for name, parameter in trainable:
        level = "encoder" if name.startswith("encoder.") else "heads"
        no_decay = parameter.dim() < 2 or "norm" in name.lower() or ".crf." in name
        groups.setdefault((level, no_decay), []).append(parameter)
    param_groups = [
        {
            "params": parameters,
            "lr": training.encoder_learning_rate if level == "encoder" else training.head_learning_rate,
            "weight_decay": 0.0 if no_decay else training.weight_decay,
            "name": f"{level}{'/no_decay' if no_decay else ''}",
        }
        for (level, no_decay), parameters in sorted(groups.items())
    ]
    grouped = [id(parameter) for group in param_groups for parameter in group["params"]]
    assert len(grouped) == len(set(grouped)) == len(trainable), "every trainable parameter in exactly one group"
    return torch.optim.AdamW(param_groups)


# ---------------------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class LoopArguments:
    """Command-line settings that are not part of the run config (where to write, how to track, what to resume)."""

    output_dir: str
    resume_from_checkpoint: str | None = None
    overwrite_output_dir: bool = False  # a folder holding a run is cleared (its run's files) instead of refused
    with_tracking: bool = False
    report_to: str = "tensorboard"
    mixed_precision: str | None = None
    cpu: bool = False
    stop_after_steps: int | None = None  # for tests: stop as if killed after this many steps


@dataclass
class _TrainState:
    """Where a run is: saved as JSON in each checkpoint (never pickled), restored on resume."""

    completed_steps: int = 0
    best_score: float | None = None
    epoch: int = 0  # sampler epoch
    batches_in_epoch: int = 0
    early_stopping: dict[str, Any] = field(default_factory=dict)  # EarlyStopping.state_dict()
    # Wall seconds of the invocations before this one, each counted up to its last checkpoint: a killed run's
    # `wall_seconds` adds up its invocations instead of reporting only the one that finished it.
    earlier_seconds: float = 0.0

    def to_json(self, run: "TrainingRun") -> dict[str, Any]:
        return {"completed_steps": self.completed_steps, "best_score": self.best_score, "epoch": self.epoch,
                "batches_in_epoch": self.batches_in_epoch, "sampler": run.sampler.state_dict(),
                "fingerprint": run_fingerprint(run.run_config), "early_stopping": self.early_stopping,
                "wall_seconds": run.wall_seconds()}

    @classmethod
    def from_checkpoint(cls, values: dict[str, Any]) -> "_TrainState":
        return cls(values["completed_steps"], values["best_score"], values["epoch"], values["batches_in_epoch"],
                   values.get("early_stopping", {}), values.get("wall_seconds", 0.0))

    @property
    def stopped_early(self) -> bool:
        return self.early_stopping.get("stopped_at_step") is not None


@dataclass
class TrainingRun:
    """What the loop works with, built once by `_prepare_run`, and where it is (`state`)."""

    run_config: RunConfig
    args: LoopArguments
    accelerator: Accelerator
    output_dir: Path
    tasks: list[TaskData]
    tokenizer: Any
    model: Any  # prepared by Accelerate: DDP-wrapped on several processes
    optimizer: Any
    scheduler: Any
    sampler: MultiTaskBatchSampler
    train_dataloader: Any
    collator: Any
    eval_sets: list[dict[str, tuple[Any, list]]]  # per task: split -> (tokenized windows, sentences)
    task_names: list[str]  # the model's heads, in the order of the task ids batches carry
    state: _TrainState = field(default_factory=_TrainState)
    started: float = field(default_factory=time.monotonic)  # when this invocation began

    @property
    def training(self) -> TrainingSpec:
        return self.run_config.training

    def wall_seconds(self) -> float:
        """This invocation's seconds so far, plus those of the invocations it resumes."""
        return self.state.earlier_seconds + time.monotonic() - self.started


def make_accelerator(run_config: RunConfig, args: LoopArguments) -> Accelerator:
    # split_batches: train_batch_size is the global batch, split across processes, so that 1 and N processes see the
    # same examples at each step (and the LR scheduler steps once per optimizer step).
    # find_unused_parameters: a batch uses only its tasks' heads; DDP must not wait for the others' gradients.
    return Accelerator(
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        gradient_accumulation_steps=run_config.training.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        cpu=args.cpu,
        log_with=args.report_to if args.with_tracking else None,
        project_dir=args.output_dir,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )


def check_process_count(accelerator: Accelerator) -> None:
    """Refuses a launch whose processes would not train together: each would be its own run writing the same folder
    (seen: `accelerate launch` with a 2-process GPU config on a machine without GPU, and no `--cpu`)."""
    launched = os.environ.get("WORLD_SIZE", "1")
    if launched.isdigit() and int(launched) != accelerator.num_processes:
        raise RunConfigError(
            f"WORLD_SIZE={launched}: the launcher started {launched} processes, but each runs as one of "
            f"{accelerator.num_processes} and they would train apart, writing the same folder; on CPUs pass --cpu "
            f"to the script (with `accelerate launch --multi_gpu`), or launch {accelerator.num_processes} process(es)"
        )


RESUMABLE_CHANGES = (
    "training.max_steps", "training.num_train_epochs", "training.eval_steps", "training.checkpointing_steps",
    "training.logging_steps", "training.keep_checkpoints", "training.eval_batch_size",
    "training.early_stopping_patience", "training.early_stopping_threshold", "data_root",
)
"""Run-config keys that a resumed run may change: the budget (steps or epochs, and early stopping), how often it
evaluates, checkpoints and logs, how many checkpoints it keeps, the evaluation batch size, and where the project
lives (`data_root`). Every other key is part of the run's identity (`run_fingerprint`)."""


def run_fingerprint(run_config: RunConfig) -> dict[str, Any]:
    """The resolved run config as flat keys (`training.encoder_learning_rate`, `tasks[0].data_dir`,
    `model.encoder_config.d_model`), without `RESUMABLE_CHANGES`: what a checkpoint records and a resume must
    match."""
    return {key: value for key, value in flatten(run_config.to_dict()).items()
            if not any(key == name or key.startswith(name + ".") for name in RESUMABLE_CHANGES)}


def _recorded_fingerprint(saved: dict[str, Any]) -> dict[str, Any] | None:
    """The fingerprint a checkpoint recorded; for a checkpoint of an older version, the few settings it kept
    (`settings`: seed, batch size, accumulation, model source, corpora), under the same keys."""
    if "fingerprint" in saved:
        return saved["fingerprint"]
    if "settings" not in saved:
        return None
    return {key if key.startswith(("model.", "tasks[")) else f"training.{key}": value
            for key, value in flatten(saved["settings"]).items()}


def check_run_fingerprint(saved: dict[str, Any], run_config: RunConfig, checkpoint: Path) -> None:
    """Refuses a resume whose run config differs from the checkpoint's (outside `RESUMABLE_CHANGES`), naming every
    change as `key: <value> in the checkpoint, <value> now`."""
    recorded, current = _recorded_fingerprint(saved), run_fingerprint(run_config)
    if recorded is None:
        return
    if "fingerprint" not in saved:  # an older checkpoint: only what it recorded is compared
        current = {key: current.get(key) for key in recorded}
    found = changes(recorded, current, "checkpoint")
    if found:
        raise CheckpointError(f"--resume_from_checkpoint {checkpoint}: expected the run config it was written with, "
                              f"got {'; '.join(found)}; restore those settings, or train afresh with "
                              f"--overwrite_output_dir")


def run_training(run_config: RunConfig, args: LoopArguments) -> TrainingOutcome:
    """Trains the model that `run_config` describes and leaves a remote-code model folder in `args.output_dir`.

    The folder is locked for the run (`hstl.locking`: a second run into it stops at once). A folder that holds a run
    is refused unless it is resumed or `args.overwrite_output_dir` clears it. Resuming (`args.resume_from_checkpoint`)
    into a folder whose run has finished leaves that folder as it is and returns its results: the best model and
    `all_results.json` of a finished run are never replaced. A full disk is one line (`DiskFullError`)."""
    started = time.monotonic()
    accelerator = make_accelerator(run_config, args)
    check_process_count(accelerator)
    output_dir = Path(args.output_dir)
    lock = lock_for_all_processes(accelerator, OutputLock(output_dir / LOCK_FILE, f"--output_dir {output_dir}"))
    try:
        return _run_locked(run_config, args, accelerator, started)
    except Exception as error:
        if is_disk_full(error, output_dir):
            raise disk_full_error(error, output_dir, "resume with --resume_from_checkpoint latest") from None
        raise
    finally:
        if lock is not None:
            lock.release()


LOCK_FILE = ".hstl.lock"
"""The lock file of a training run, in its output folder."""


def _run_locked(run_config: RunConfig, args: LoopArguments, accelerator: Accelerator, started: float) -> TrainingOutcome:
    finished = _finished_run(args, accelerator)
    if finished is not None:
        return finished
    checkpoint = _resolve_resume(args.resume_from_checkpoint, Path(args.output_dir))
    if checkpoint is not None:  # before anything is read or written: a refused resume changes nothing
        check_run_fingerprint(read_trainer_state(checkpoint), run_config, checkpoint)
    else:
        _clear_or_refuse_used_folder(accelerator, args)
    _start_output_dir(accelerator, run_config, Path(args.output_dir))
    if checkpoint is None:  # a fresh start: the log of an earlier start in this folder is not this run's
        _truncate_train_log(accelerator, Path(args.output_dir), 0)
    run = _prepare_run(run_config, args, accelerator)
    run.started = started
    if checkpoint is not None:
        _resume(run, checkpoint)
    _train(run)
    # Stopped before max_steps but not by early stopping: on purpose (tests simulate a kill this way).
    if run.state.completed_steps < run.training.max_steps and not run.state.stopped_early:
        outcome = TrainingOutcome(str(run.output_dir), run.state.completed_steps, run.state.best_score, {})
    else:
        outcome = _finish(run)
    del run  # the prepared model must go before the process group does (see _end_training)
    _end_training(accelerator)
    return outcome


RUN_MARKS = ("all_results.json", "model.safetensors", "best_model", "checkpoints")
"""What shows that a folder holds a run (finished, or with checkpoints): such a folder is not trained into afresh."""


def _run_files(output_dir: Path) -> list[Path]:
    """The files and folders a run writes in its output folder (`--overwrite_output_dir` removes these only)."""
    from .hub import TOKENIZER_FILES
    from .remote_code import GROUP_MODULES

    names = {"all_results.json", "train_log.jsonl", "run_config.yaml", "README.md", "config.json", "checkpoints",
             "best_model", "tokenizer", "hstl", *TOKENIZER_FILES, *(f"{module}.py" for module in GROUP_MODULES)}
    return sorted(path for path in output_dir.iterdir()
                  if path.name in names or path.name.endswith((".safetensors", ".safetensors.index.json", ".incomplete")))


def _clear_or_refuse_used_folder(accelerator: Accelerator, args: LoopArguments) -> None:
    """A fresh start into a folder holding a run: refused in one line, or (`overwrite_output_dir`) that run's files
    are removed first, so that no old result, checkpoint or model is taken for the new run's."""
    output_dir = Path(args.output_dir)
    if args.overwrite_output_dir and args.resume_from_checkpoint is not None:
        raise RunConfigError("--overwrite_output_dir: expected it without --resume_from_checkpoint (a resumed run "
                             "keeps its folder), got both")
    marks = [name for name in RUN_MARKS if (output_dir / name).exists()
             and not ((output_dir / name).is_dir() and not any((output_dir / name).iterdir()))]
    if not marks:
        return
    if not args.overwrite_output_dir:
        resume = "" if args.resume_from_checkpoint else "resume it with --resume_from_checkpoint latest, or "
        raise RunConfigError(f"--output_dir {output_dir}: expected a new or empty folder, got one holding a run "
                             f"({', '.join(marks)}); {resume}pass --overwrite_output_dir to remove that run's files and "
                             f"train afresh")
    if accelerator.is_main_process:
        for path in _run_files(output_dir):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        logger.info(f"--overwrite_output_dir: removed the earlier run's files from {output_dir}",
                    main_process_only=True)
    accelerator.wait_for_everyone()


def _finished_run(args: LoopArguments, accelerator: Accelerator) -> TrainingOutcome | None:
    """The outcome of the finished run in `args.output_dir` when asked to resume it, else None."""
    results_path = Path(args.output_dir) / "all_results.json"
    if args.resume_from_checkpoint is None or not results_path.is_file():
        return None
    results = json.loads(results_path.read_text(encoding="utf-8"))
    accelerator.print(f"--resume_from_checkpoint: {args.output_dir} holds a finished run ({results_path.name}, "
                      f"{results.get('completed_steps')} steps); it is left as it is. Train further in a new "
                      f"--output_dir (e.g. finetune.py --model {args.output_dir}).")
    return TrainingOutcome(args.output_dir, results.get("completed_steps", 0),
                           results.get("best_validation_mean_f1"), results)


def _start_output_dir(accelerator: Accelerator, run_config: RunConfig, output_dir: Path) -> None:
    training = run_config.training
    if training.train_batch_size % accelerator.num_processes:
        raise RunConfigError(
            f"training.train_batch_size: expected a multiple of the {accelerator.num_processes} processes, "
            f"got {training.train_batch_size}"
        )
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        run_config.save(output_dir / "run_config.yaml")
    accelerator.wait_for_everyone()


def _prepare_run(run_config: RunConfig, args: LoopArguments, accelerator: Accelerator) -> TrainingRun:
    """Reads the corpora, builds tokenizer, model, datasets, sampler, optimizer and scheduler, and prepares them."""
    training = run_config.training
    output_dir = Path(args.output_dir)
    set_seed(training.seed)
    tasks = load_task_data(run_config)
    tokenizer = build_tokenizer(run_config, tasks, output_dir, accelerator)
    model = build_model(run_config, tasks, tokenizer)
    apply_freeze(model, training.freeze)
    train_sets, eval_sets = _build_datasets(run_config, tasks, tokenizer, model.config, accelerator)
    from windows_hstl import HSTLDataCollator

    collator = HSTLDataCollator(tokenizer)
    sampler, train_dataloader = build_train_loader(train_sets, collator, training)
    training.resolve_max_steps(len(sampler))  # num_train_epochs, when given, becomes a number of steps here
    optimizer = build_optimizer(model, run_config)
    scheduler = get_scheduler(
        training.lr_scheduler_type, optimizer, num_warmup_steps=math.ceil(training.warmup_ratio * training.max_steps),
        num_training_steps=training.max_steps,
    )
    model, optimizer, train_dataloader, scheduler = accelerator.prepare(model, optimizer, train_dataloader, scheduler)
    if args.with_tracking:
        accelerator.init_trackers("hstl", config=_flat_tracker_config(run_config))
    logger.info(
        f"***** Training {len(tasks)} task(s): {', '.join(task.name for task in tasks)} *****\n"
        f"  rows per task = {[len(d) for d in train_sets]}, global batch = {training.train_batch_size}, "
        f"accumulation = {training.gradient_accumulation_steps}, steps = {training.max_steps}, "
        f"batches per epoch = {len(sampler)}, processes = {accelerator.num_processes}",
        main_process_only=True,
    )
    # Batches carry the model's task ids: a fine-tuned model may hold more heads than this run trains.
    task_names = accelerator.unwrap_model(model).config.task_names
    return TrainingRun(run_config, args, accelerator, output_dir, tasks, tokenizer, model, optimizer, scheduler,
                       sampler, train_dataloader, collator, eval_sets, task_names)


def _build_datasets(run_config: RunConfig, tasks: list[TaskData], tokenizer, config: HSTLConfig,
                    accelerator: Accelerator) -> tuple[list, list[dict]]:
    """Tokenized training windows per task, and per task `{split: (windows, sentences)}` for evaluation."""
    training = run_config.training

    def windows(task: TaskData, split: str):
        return build_task_dataset(tokenizer, task.splits[split], config.task_label2id(task.name),
                                  config.task_index(task.name), training.max_length, training.window_overlap)

    with accelerator.main_process_first():
        train_sets = [windows(task, "train") for task in tasks]
        eval_sets = [{split: (windows(task, split), task.splits[split]) for split in ("validation", "test")
                      if split in task.splits} for task in tasks]
    return train_sets, eval_sets


def build_train_loader(train_sets: list, collator, training: TrainingSpec) -> tuple[MultiTaskBatchSampler, DataLoader]:
    """The multi-task sampler over every task's windows, and the loader that uses it.

    An epoch is one pass's worth of rows, rounded up to whole optimizer steps (an epoch ending inside an accumulation
    would make Accelerate step early). The loader draws its iterators' seeds from its own generator, not from torch's
    global one: a resumed run creates an iterator the uninterrupted run did not, and the global generator must reach
    the next batch's dropout in the state the checkpoint saved."""
    from datasets import concatenate_datasets

    accumulation = training.gradient_accumulation_steps
    rows = sum(len(dataset) for dataset in train_sets)
    sampler = MultiTaskBatchSampler(
        [len(dataset) for dataset in train_sets], batch_size=training.train_batch_size,
        strategy=training.sampling_strategy, alpha=training.sampling_alpha, batch_mode=training.batch_mode,
        seed=training.seed, num_batches=accumulation * math.ceil(rows / (training.train_batch_size * accumulation)),
        lengths=_row_lengths(train_sets) if training.group_by_length else None,
    )
    loader = DataLoader(concatenate_datasets(train_sets), batch_sampler=sampler, collate_fn=collator,
                        generator=torch.Generator().manual_seed(training.seed))
    return sampler, loader


def _resume(run: TrainingRun, checkpoint: Path) -> None:
    """Restores model, optimizer, scheduler, RNG, sampler and loop state from `checkpoint`."""
    run.accelerator.print(f"Resuming from {checkpoint}")
    saved = read_trainer_state(checkpoint)
    if "sampler" in saved:
        try:
            run.sampler.load_state_dict(saved["sampler"])
        except ValueError as error:
            raise CheckpointError(f"--resume_from_checkpoint {checkpoint}: {error}") from None
    run.state = _TrainState.from_checkpoint(load_checkpoint(run.accelerator, checkpoint))
    if "sampler" in saved and run.sampler.epoch != run.state.epoch:
        raise damaged_checkpoint(checkpoint, f"sampler epoch {run.sampler.epoch}, loop epoch {run.state.epoch}")
    _truncate_train_log(run.accelerator, run.output_dir, run.state.completed_steps)


def _resolve_resume(value: str | None, output_dir: Path) -> Path | None:
    if value is None:
        return None
    if value == "latest":
        latest = find_latest_checkpoint(output_dir)
        if latest is None:
            logger.warning(f"--resume_from_checkpoint latest: no checkpoint in {output_dir}; starting afresh",
                           main_process_only=True)
        return latest
    path = Path(value)
    if not path.is_dir():
        raise CheckpointError(f"--resume_from_checkpoint: {path} is not a checkpoint folder")
    return path


# ---------------------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------------------


def _train(run: TrainingRun) -> None:
    """Optimizer steps until `max_steps` (or `--stop_after_steps`), logging, evaluating and checkpointing on the way."""
    training, state = run.training, run.state
    stop_at = training.max_steps if run.args.stop_after_steps is None else min(training.max_steps,
                                                                               run.args.stop_after_steps)
    progress = tqdm(range(training.max_steps), initial=state.completed_steps,
                    disable=not run.accelerator.is_local_main_process)
    running = RunningLoss(len(run.task_names), run.accelerator.device)
    run.model.train()
    for batch in _batches_from(run):
        if state.completed_steps >= stop_at or state.stopped_early:
            break
        if not train_on_batch(run, batch, running):
            continue
        state.completed_steps += 1
        progress.update(1)
        _after_step(run, running, progress)
    progress.close()


def _batches_from(run: TrainingRun):
    """Yields training batches epoch after epoch, starting where `run.state` says (mid-epoch after a resume)."""
    state = run.state
    while True:
        # Both: the prepared loader resets the sampler's epoch on one process, and does not forward it on several.
        run.train_dataloader.set_epoch(state.epoch)
        run.sampler.set_epoch(state.epoch)
        skip = state.batches_in_epoch
        active = run.accelerator.skip_first_batches(run.train_dataloader, skip) if skip else run.train_dataloader
        for batch in active:
            state.batches_in_epoch += 1
            yield batch
        state.epoch += 1
        state.batches_in_epoch = 0


def train_on_batch(run: TrainingRun, batch, running: "RunningLoss") -> bool:
    """Forward, backward and (every `gradient_accumulation_steps` batches) an optimizer step.

    Returns True when an optimizer step was taken. A non-finite loss or gradient norm stops the run or skips the step,
    as `training.nonfinite_policy` says."""
    accelerator, model, optimizer = run.accelerator, run.model, run.optimizer
    with accelerator.accumulate(model):
        outputs = model(**batch, decode=False)
        if not _all_finite(accelerator, outputs.loss):
            _handle_nonfinite(run, batch, "loss")
            optimizer.zero_grad()
            return False
        running.add(outputs.per_example_loss.detach(), batch["task_ids"])
        accelerator.backward(outputs.loss)
        if accelerator.sync_gradients:
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), run.training.max_grad_norm)
            if not _all_finite(accelerator, grad_norm):
                _handle_nonfinite(run, batch, "gradient norm")
                optimizer.zero_grad()
                return False
        optimizer.step()
        run.scheduler.step()
        optimizer.zero_grad()
    return accelerator.sync_gradients


def _after_step(run: TrainingRun, running: "RunningLoss", progress) -> None:
    """Logs, evaluates (keeping the best model) and checkpoints, each when its interval says."""
    training, step = run.training, run.state.completed_steps
    if step % training.logging_steps == 0 or step == training.max_steps:
        log = running.pop(run.accelerator, run.task_names)
        log["lr/encoder"], log["lr/heads"] = _group_lrs(run.optimizer)
        progress.set_postfix(loss=f"{log['train_loss']:.3f}")
        run.accelerator.log(log, step=step)
        _append_train_log(run.accelerator, run.output_dir, {"step": step, **log})
    if training.eval_steps and (step % training.eval_steps == 0 or step == training.max_steps):
        previous_best = run.state.best_score
        score = _evaluate_and_keep_best(run)
        run.model.train()
        stopper = EarlyStopping(training.early_stopping_patience, training.early_stopping_threshold)
        stopper.load_state_dict(run.state.early_stopping)
        if stopper.update(step, improved=stopper.improves(previous_best, score)):
            logger.info(f"step {step}: early stopping, no better validation mean F1 in {stopper.patience} "
                        f"evaluations", main_process_only=True)
        run.state.early_stopping = stopper.state_dict()
    if training.checkpointing_steps and step % training.checkpointing_steps == 0:
        save_checkpoint(run.accelerator, run.output_dir, step, run.state.to_json(run))
        if run.accelerator.is_main_process:
            prune_checkpoints(run.output_dir, keep=training.keep_checkpoints)


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation, best model and the end of a run
# ---------------------------------------------------------------------------------------------------------------------


def _evaluate(run: TrainingRun, split: str) -> dict[str, Any]:
    """Entity F1 (conlleval's counting) per task on `split`, and their mean."""
    results = {}
    for task, task_eval_sets in zip(run.tasks, run.eval_sets):
        if split not in task_eval_sets:
            continue
        dataset, sentences = task_eval_sets[split]
        # The one predict -> labels -> score path, shared with hstl-evaluate; the windows were built once, up front.
        settings = WindowSettings(run.training.max_length, run.training.window_overlap, run.training.eval_batch_size)
        results[task.name] = score_head(run.model, run.collator.tokenizer, sentences, task.name, settings,
                                        accelerator=run.accelerator, dataset=dataset,
                                        batching=FeedSettings(max_windows=settings.batch_size)).result()
    if results:
        results["mean_f1"] = sum(r["f1"] for r in results.values()) / len(results)
    return results


def _format_scores(results: dict[str, Any]) -> str:
    return ", ".join(f"{name} {value['f1']:.4f}" for name, value in results.items() if name != "mean_f1")


def _evaluate_and_keep_best(run: TrainingRun) -> float | None:
    """Scores the validation split; a better mean F1 with finite weights replaces OUTPUT_DIR/best_model.

    Returns the mean F1 when it counts (finite, with finite weights), else None; the scores also go to the trackers
    and to OUTPUT_DIR/train_log.jsonl (a line with `validation_f1/<task>` and `validation_f1/mean`)."""
    step, state = run.state.completed_steps, run.state
    results = _evaluate(run, "validation")
    if not results:
        return None
    scores = {f"validation_f1/{name}": value["f1"] for name, value in results.items()
              if name != "mean_f1"} | {"validation_f1/mean": results["mean_f1"]}
    run.accelerator.log(scores, step=step)
    _append_train_log(run.accelerator, run.output_dir, {"step": step, **scores})
    logger.info(f"step {step}: validation F1 {_format_scores(results)} (mean {results['mean_f1']:.4f})",
                main_process_only=True)
    score = results["mean_f1"]
    weights_finite = all(torch.isfinite(p).all() for p in run.accelerator.unwrap_model(run.model).parameters())
    if not (math.isfinite(score) and weights_finite):
        return None
    if state.best_score is None or score > state.best_score:
        save_model_folder(run.accelerator, run.model, run.tokenizer, run.output_dir / "best_model")
        state.best_score = score
    return score


def _finish(run: TrainingRun) -> TrainingOutcome:
    """Puts the best (or final) weights in `output_dir`, scores them on validation and test, writes all_results.json
    and the model card (README.md)."""
    accelerator, output_dir = run.accelerator, run.output_dir
    best_dir = output_dir / "best_model"
    unwrapped = accelerator.unwrap_model(run.model)
    if best_dir.is_dir():
        best = HSTLModel.from_pretrained(best_dir)
        unwrapped.load_state_dict(best.state_dict())
    if run.run_config.model.keep_only_trained_tasks:  # stage 2: the folder holds the target's family and head only
        unwrapped.keep_tasks([task.name for task in run.tasks])
    save_model_folder(accelerator, run.model, run.tokenizer, output_dir)
    run.model.eval()
    results = {"completed_steps": run.state.completed_steps, "num_processes": accelerator.num_processes,
               "max_steps": run.training.max_steps,  # the budget, in optimizer steps
               "stopped_early_at_step": run.state.early_stopping.get("stopped_at_step"),  # None: the budget ended it
               "best_validation_mean_f1": run.state.best_score,
               "validation": _evaluate(run, "validation"), "test": _evaluate(run, "test")}
    results["wall_seconds"] = run.wall_seconds()
    if accelerator.is_main_process:
        (output_dir / "all_results.json").write_text(json.dumps(results, indent=2))
        write_model_card(output_dir)  # README.md: what the model is, how it was trained, its scores
        if best_dir.is_dir():
            shutil.rmtree(best_dir)
    accelerator.wait_for_everyone()
    return TrainingOutcome(str(output_dir), run.state.completed_steps, run.state.best_score, results)


def _end_training(accelerator: Accelerator) -> None:
    """Frees the prepared (DDP-wrapped) model while every process is still here, then ends the run together.

    Freed later, when the caller drops it, DDP's reducer can hold the last reference to the gloo process group, whose
    destructor then waits forever for a process that has already exited (seen: the second of two CPU processes hung
    at exit after the first had finished)."""
    accelerator.free_memory()  # the accelerator's own references to the prepared objects
    gc.collect()
    accelerator.wait_for_everyone()
    accelerator.end_training()


# ---------------------------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------------------------


class RunningLoss:
    """Sums per-example losses per task between logging steps (on device, synced only when logged)."""

    def __init__(self, num_tasks: int, device):
        self.sums = torch.zeros(num_tasks, device=device)
        self.counts = torch.zeros(num_tasks, device=device)

    def add(self, per_example_loss: torch.Tensor, task_ids: torch.Tensor) -> None:
        self.sums.index_add_(0, task_ids, per_example_loss.float())
        self.counts.index_add_(0, task_ids, torch.ones_like(per_example_loss, dtype=torch.float))

    def pop(self, accelerator: Accelerator, task_names: list[str]) -> dict[str, float]:
        sums, counts = accelerator.reduce(self.sums, "sum"), accelerator.reduce(self.counts, "sum")
        log = {"train_loss": (sums.sum() / counts.sum().clamp(min=1)).item()}
        for name, task_sum, task_count in zip(task_names, sums.tolist(), counts.tolist()):
            if task_count:
                log[f"train_loss/{name}"] = task_sum / task_count
        self.sums.zero_()
        self.counts.zero_()
        return log


def _all_finite(accelerator: Accelerator, value: torch.Tensor) -> bool:
    # Every process must take the same branch, or DDP's collectives deadlock.
    # (accelerate's reduce knows only sum, mean and max: count the processes that saw a non-finite value.)
    nonfinite = torch.tensor([float(not torch.isfinite(value).all())], device=accelerator.device)
    return bool(accelerator.reduce(nonfinite, "sum").item() == 0.0)


def _handle_nonfinite(run: TrainingRun, batch, what: str) -> None:
    batch_tasks = sorted({run.task_names[i] for i in batch["task_ids"].unique().tolist()})
    message = f"non-finite {what} at step {run.state.completed_steps + 1} on task(s) {batch_tasks}"
    if run.training.nonfinite_policy == "stop":
        raise NonFiniteError(message + "; stopping (nonfinite_policy: stop). The last checkpoint and best model are "
                             "untouched. Set training.nonfinite_policy: skip to skip such steps instead.")
    logger.warning(message + "; skipping this step (nonfinite_policy: skip)", main_process_only=True)
def _append_train_log(accelerator: Accelerator, output_dir: Path, record: dict[str, Any]) -> None:
    """One JSON line per logging step and per evaluation in OUTPUT_DIR/train_log.jsonl, whatever tracker is (or is
    not) in use."""
    if accelerator.is_main_process:
        with open(output_dir / "train_log.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def _truncate_train_log(accelerator: Accelerator, output_dir: Path, completed_steps: int) -> None:
    """On resume, drop log lines of steps after the checkpoint: they will be logged again."""
    path = output_dir / "train_log.jsonl"
    if accelerator.is_main_process and path.exists():
        kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line)["step"] <= completed_steps]
        path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def _row_lengths(train_sets) -> list[int]:
    """Sub-tokens of every training row, in the order of the concatenated dataset (for length-grouped batches)."""
    return [len(input_ids) for dataset in train_sets for input_ids in dataset["input_ids"]]


def _group_lrs(optimizer) -> tuple[float, float]:
    lrs = {group["name"].split("/")[0]: group["lr"] for group in optimizer.param_groups}
    return lrs.get("encoder", 0.0), lrs.get("heads", 0.0)


def _flat_tracker_config(run_config: RunConfig) -> dict[str, Any]:
    flat = {f"training/{key}": value for key, value in run_config.to_dict()["training"].items()
            if isinstance(value, (int, float, str, bool))}
    flat["tasks"] = ",".join(run_config.task_names())
    flat["encoder"] = str(run_config.model.encoder or run_config.model.init_from or "scratch")
    return flat
