"""The training loop shared by `train.py` (stage 1, multi-task) and `finetune.py` (stage 2, one target corpus).

Everything a run needs is built here from a `RunConfig`: task data, tokenizer, model, tokenized datasets, sampler,
optimizer, scheduler; then a plain Accelerate loop with evaluation, best-model selection, atomic checkpoints and exact
resumption. The scripts only parse arguments and call `run_training`.
"""

from __future__ import annotations

import gc
import json
import math
import shutil
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
    CheckpointError,
    find_latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    save_model_folder,
)
from configuration_hstl import HSTLConfig
from .data import Sentence, label_list_from, load_hf_token_dataset, read_conll, read_split_dir
from .errors import NonFiniteError
from .inference import build_task_dataset, predict_task_labels
from modeling_hstl import HSTLModel
from .run_config import RunConfig, RunConfigError, TaskSpec, resolve_model_source
from .sampling import MultiTaskBatchSampler
from .scoring import score_sentences


logger = get_logger(__name__)


@dataclass
class TaskData:
    """One task's sentences per split, with its label list and family."""

    name: str
    family: str
    labels: list[str]
    splits: dict[str, list[Sentence]] = field(default_factory=dict)


@dataclass
class TrainingOutcome:
    """What a run leaves: where the model is, its best validation score and the final per-task results."""

    output_dir: str
    completed_steps: int
    best_score: float | None
    results: dict[str, Any]


# ---------------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------------


def _read_task_splits(spec: TaskSpec, run_config: RunConfig) -> dict[str, list[Sentence]]:
    if spec.data_dir is not None:
        splits = read_split_dir(run_config.resolve_path(spec.data_dir))
        return {"validation" if name in ("devel", "dev") else name: sentences for name, sentences in splits.items()}
    if spec.hf_dataset is not None:
        splits = {}
        for split_name, hf_split in (("train", spec.hf_train_split), ("validation", spec.hf_validation_split),
                                     ("test", spec.hf_test_split)):
            if hf_split:
                splits[split_name] = load_hf_token_dataset(
                    spec.hf_dataset, hf_split, tokens_column=spec.tokens_column, tags_column=spec.tags_column
                )[0]
        return splits
    files = {"train": spec.train_file, "validation": spec.validation_file, "test": spec.test_file}
    return {split: read_conll(run_config.resolve_path(path)) for split, path in files.items() if path}


def _seeded_subsample(sentences: list[Sentence], cap: int) -> list[Sentence]:
    """At most `cap` sentences, in corpus order; the same ones whatever the run's seed, so that capped runs (the CPU
    miniature) compare methods and seeds on identical data."""
    if len(sentences) <= cap:
        return sentences
    order = torch.randperm(len(sentences), generator=torch.Generator().manual_seed(0))[:cap]
    return [sentences[index] for index in sorted(order.tolist())]


def load_task_data(run_config: RunConfig) -> list[TaskData]:
    """Reads every task's splits. The label list is the config's, or B-/I- of every type seen in any split."""
    tasks = []
    for spec in run_config.tasks:
        splits = _read_task_splits(spec, run_config)
        if "train" not in splits:
            raise RunConfigError(f"{run_config.source}: task {spec.name}: no training split found")
        caps = {"train": spec.max_train_sentences, "validation": spec.max_validation_sentences,
                "test": spec.max_test_sentences}
        for split, cap in caps.items():
            if cap is not None and split in splits:
                splits[split] = _seeded_subsample(splits[split], cap)
        labels = spec.labels or label_list_from(sentence for split in splits.values() for sentence in split)
        tasks.append(TaskData(name=spec.name, family=spec.family, labels=labels, splits=splits))
    return tasks


# ---------------------------------------------------------------------------------------------------------------------
# Tokenizer and model
# ---------------------------------------------------------------------------------------------------------------------


def build_tokenizer(run_config: RunConfig, tasks: list[TaskData], output_dir: Path, accelerator: Accelerator):
    """The tokenizer of `model.tokenizer`, of the pretrained encoder or model, or one trained on the training text."""
    from .tokenization import load_tokenizer, train_xlnet_tokenizer

    spec = run_config.model
    source = spec.tokenizer or spec.init_from or spec.encoder
    if source is not None and source != "train":
        return load_tokenizer(resolve_model_source(source))
    tokenizer_dir = output_dir / "tokenizer"
    # Train once on the main process; the others wait, then load the same files.
    with accelerator.main_process_first():
        if accelerator.is_main_process and not (tokenizer_dir / "tokenizer_config.json").exists():
            train_sentences = [sentence.tokens for task in tasks for sentence in task.splits["train"]]
            train_xlnet_tokenizer(train_sentences, tokenizer_dir, vocab_size=spec.tokenizer_vocab_size,
                                  seed=run_config.training.seed)
        return load_tokenizer(str(tokenizer_dir))


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
    spec = run_config.model
    hierarchy = {
        "use_family_layers": spec.use_family_layers,
        "family_hidden_size": spec.family_hidden_size,
        "family_activation": spec.family_activation,
        "hidden_dropout": spec.hidden_dropout,
        "loss_reduction": spec.loss_reduction,
    }
    if spec.init_from is not None:
        model = HSTLModel.from_pretrained(spec.init_from)
        for task in tasks:
            if task.name in model.config.task_names:
                check_task_labels(model.config, task, spec.init_from)
            else:
                model.add_task(task.name, task.labels, task.family)
        return model
    if spec.encoder is not None:
        return HSTLModel.from_encoder(resolve_model_source(spec.encoder), _task_dicts(tasks), **hierarchy)
    config = HSTLConfig(
        encoder_config=_encoder_config_from_scratch(spec.encoder_config, tokenizer), tasks=_task_dicts(tasks), **hierarchy
    )
    return HSTLModel(config)


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
# The loop
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class LoopArguments:
    """Command-line settings that are not part of the run config (where to write, how to track, what to resume)."""

    output_dir: str
    resume_from_checkpoint: str | None = None
    with_tracking: bool = False
    report_to: str = "tensorboard"
    mixed_precision: str | None = None
    cpu: bool = False
    stop_after_steps: int | None = None  # for tests: stop as if killed after this many steps


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


def _evaluate(model, tasks, eval_sets, collator, accelerator, run_config, split="validation") -> dict[str, Any]:
    """Strict entity F1 per task on `split`, and their mean."""
    results = {}
    for task_index, task in enumerate(tasks):
        if split not in eval_sets[task_index]:
            continue
        dataset, sentences = eval_sets[task_index][split]
        predicted = predict_task_labels(
            model, dataset, collator, accelerator, task.name, [len(s.tokens) for s in sentences],
            batch_size=run_config.training.eval_batch_size,
        )
        id2label = dict(enumerate(task.labels))
        predicted_labels = [[id2label[label_id] for label_id in sentence] for sentence in predicted]
        results[task.name] = score_sentences([s.labels for s in sentences], predicted_labels)
    if results:
        results["mean_f1"] = sum(r["f1"] for r in results.values()) / len(results)
    return results


def _format_scores(results: dict[str, Any]) -> str:
    return ", ".join(f"{name} {value['f1']:.4f}" for name, value in results.items() if name != "mean_f1")


def run_training(run_config: RunConfig, args: LoopArguments) -> TrainingOutcome:
    """Trains the model that `run_config` describes and leaves a remote-code model folder in `args.output_dir`."""
    accelerator = make_accelerator(run_config, args)
    training = run_config.training
    output_dir = Path(args.output_dir)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        run_config.save(output_dir / "run_config.yaml")
    accelerator.wait_for_everyone()
    set_seed(training.seed)
    if training.train_batch_size % accelerator.num_processes:
        raise RunConfigError(
            f"training.train_batch_size: expected a multiple of the {accelerator.num_processes} processes, "
            f"got {training.train_batch_size}"
        )

    tasks = load_task_data(run_config)
    tokenizer = build_tokenizer(run_config, tasks, output_dir, accelerator)
    model = build_model(run_config, tasks, tokenizer)
    apply_freeze(model, training.freeze)
    task_ids = [model.config.task_index(task.name) for task in tasks]

    with accelerator.main_process_first():
        train_sets = [
            build_task_dataset(tokenizer, task.splits["train"], model.config.task_label2id(task.name), task_id,
                               training.max_length, training.window_overlap)
            for task, task_id in zip(tasks, task_ids)
        ]
        eval_sets = [
            {
                split: (build_task_dataset(tokenizer, task.splits[split], model.config.task_label2id(task.name), task_id,
                                           training.max_length, training.window_overlap), task.splits[split])
                for split in ("validation", "test") if split in task.splits
            }
            for task, task_id in zip(tasks, task_ids)
        ]
    from datasets import concatenate_datasets

    from processing_hstl import HSTLDataCollator

    collator = HSTLDataCollator(tokenizer)
    train_dataset = concatenate_datasets(train_sets)
    sampler = MultiTaskBatchSampler(
        [len(dataset) for dataset in train_sets], batch_size=training.train_batch_size,
        strategy=training.sampling_strategy, alpha=training.sampling_alpha, batch_mode=training.batch_mode,
        seed=training.seed, num_batches=training.max_steps * training.gradient_accumulation_steps,
    )
    train_dataloader = DataLoader(train_dataset, batch_sampler=sampler, collate_fn=collator)
    optimizer = build_optimizer(model, run_config)
    scheduler = get_scheduler(
        training.lr_scheduler_type, optimizer, num_warmup_steps=math.ceil(training.warmup_ratio * training.max_steps),
        num_training_steps=training.max_steps,
    )
    model, optimizer, train_dataloader, scheduler = accelerator.prepare(model, optimizer, train_dataloader, scheduler)

    if args.with_tracking:
        accelerator.init_trackers("hstl", config=_flat_tracker_config(run_config))

    state = _TrainState()
    checkpoint = _resolve_resume(args.resume_from_checkpoint, output_dir)
    if checkpoint is not None:
        accelerator.print(f"Resuming from {checkpoint}")
        state = _TrainState.from_checkpoint(load_checkpoint(accelerator, checkpoint))
        _truncate_train_log(accelerator, output_dir, state.completed_steps)

    logger.info(
        f"***** Training {len(tasks)} task(s): {', '.join(task.name for task in tasks)} *****\n"
        f"  rows per task = {[len(d) for d in train_sets]}, global batch = {training.train_batch_size}, "
        f"accumulation = {training.gradient_accumulation_steps}, steps = {training.max_steps}, "
        f"processes = {accelerator.num_processes}",
        main_process_only=True,
    )
    progress = tqdm(range(training.max_steps), initial=state.completed_steps,
                    disable=not accelerator.is_local_main_process)
    model.train()
    # Batches carry the model's task ids: a fine-tuned model may hold more heads than this run trains.
    model_task_names = accelerator.unwrap_model(model).config.task_names
    running = _RunningLoss(len(model_task_names), accelerator.device)
    stop_at = training.max_steps if args.stop_after_steps is None else min(training.max_steps, args.stop_after_steps)
    for batch in _batches_from(state, train_dataloader, sampler, accelerator):
        if state.completed_steps >= stop_at:
            break
        if not _train_on_batch(model, batch, optimizer, scheduler, accelerator, run_config, model_task_names, state,
                               running):
            continue
        state.completed_steps += 1
        progress.update(1)
        step = state.completed_steps
        if step % training.logging_steps == 0 or step == training.max_steps:
            log = running.pop(accelerator, model_task_names)
            log["lr/encoder"], log["lr/heads"] = _group_lrs(optimizer)
            progress.set_postfix(loss=f"{log['train_loss']:.3f}")
            accelerator.log(log, step=step)
            _append_train_log(accelerator, output_dir, {"step": step, **log})
        if training.eval_steps and (step % training.eval_steps == 0 or step == training.max_steps):
            state.best_score = _evaluate_and_keep_best(
                model, tasks, eval_sets, collator, accelerator, run_config, tokenizer, output_dir, step,
                state.best_score,
            )
            model.train()
        if training.checkpointing_steps and step % training.checkpointing_steps == 0:
            save_checkpoint(accelerator, output_dir, step, state.to_json(sampler))
            if accelerator.is_main_process:
                prune_checkpoints(output_dir, keep=training.keep_checkpoints)
    progress.close()
    if state.completed_steps < training.max_steps:  # stopped early on purpose (tests simulate a kill this way)
        outcome = TrainingOutcome(str(output_dir), state.completed_steps, state.best_score, {})
    else:
        outcome = _finish(model, tasks, eval_sets, collator, accelerator, run_config, tokenizer, output_dir,
                          state.completed_steps, state.best_score)
    del model, optimizer, scheduler, train_dataloader
    _end_training(accelerator)
    return outcome


def _end_training(accelerator: Accelerator) -> None:
    """Frees the prepared (DDP-wrapped) model while every process is still here, then ends the run together.

    Freed later, when the caller drops it, DDP's reducer can hold the last reference to the gloo process group, whose
    destructor then waits forever for a process that has already exited (seen: the second of two CPU processes hung
    at exit after the first had finished)."""
    accelerator.free_memory()  # the accelerator's own references to the prepared objects
    gc.collect()
    accelerator.wait_for_everyone()
    accelerator.end_training()


@dataclass
class _TrainState:
    """Where a run is: saved as JSON in each checkpoint (never pickled), restored on resume."""

    completed_steps: int = 0
    best_score: float | None = None
    epoch: int = 0  # sampler epoch: a run normally needs one, more when steps were skipped
    batches_in_epoch: int = 0

    def to_json(self, sampler: MultiTaskBatchSampler) -> dict[str, Any]:
        return {"completed_steps": self.completed_steps, "best_score": self.best_score, "epoch": self.epoch,
                "batches_in_epoch": self.batches_in_epoch, "sampler": sampler.state_dict()}

    @classmethod
    def from_checkpoint(cls, values: dict[str, Any]) -> "_TrainState":
        return cls(values["completed_steps"], values["best_score"], values["epoch"], values["batches_in_epoch"])


def _batches_from(state: _TrainState, dataloader, sampler: MultiTaskBatchSampler, accelerator: Accelerator):
    """Yields training batches epoch after epoch, starting where `state` says (mid-epoch after a resume)."""
    while True:
        # Both: the prepared loader resets the sampler's epoch on one process, and does not forward it on several.
        dataloader.set_epoch(state.epoch)
        sampler.set_epoch(state.epoch)
        skip = state.batches_in_epoch
        active = accelerator.skip_first_batches(dataloader, skip) if skip else dataloader
        for batch in active:
            state.batches_in_epoch += 1
            yield batch
        state.epoch += 1
        state.batches_in_epoch = 0


def _train_on_batch(model, batch, optimizer, scheduler, accelerator, run_config, task_names, state, running) -> bool:
    """Forward, backward and (every `gradient_accumulation_steps` batches) an optimizer step.

    Returns True when an optimizer step was taken. A non-finite loss or gradient norm stops the run or skips the step,
    as `training.nonfinite_policy` says."""
    with accelerator.accumulate(model):
        outputs = model(**batch, decode=False)
        if not _all_finite(accelerator, outputs.loss):
            _handle_nonfinite(run_config, accelerator, state.completed_steps, batch, task_names, "loss")
            optimizer.zero_grad()
            return False
        running.add(outputs.per_example_loss.detach(), batch["task_ids"])
        accelerator.backward(outputs.loss)
        if accelerator.sync_gradients:
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), run_config.training.max_grad_norm)
            if not _all_finite(accelerator, grad_norm):
                _handle_nonfinite(run_config, accelerator, state.completed_steps, batch, task_names, "gradient norm")
                optimizer.zero_grad()
                return False
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return accelerator.sync_gradients


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


def _evaluate_and_keep_best(model, tasks, eval_sets, collator, accelerator, run_config, tokenizer, output_dir, step,
                            best_score):
    results = _evaluate(model, tasks, eval_sets, collator, accelerator, run_config)
    if not results:
        return best_score
    accelerator.log({f"devel_f1/{name}": value["f1"] for name, value in results.items() if name != "mean_f1"}
                    | {"devel_f1/mean": results["mean_f1"]}, step=step)
    logger.info(f"step {step}: devel F1 {_format_scores(results)} (mean {results['mean_f1']:.4f})",
                main_process_only=True)
    score = results["mean_f1"]
    weights_finite = all(torch.isfinite(p).all() for p in accelerator.unwrap_model(model).parameters())
    if math.isfinite(score) and weights_finite and (best_score is None or score > best_score):
        save_model_folder(accelerator, model, tokenizer, output_dir / "best_model")
        return score
    return best_score


def _finish(model, tasks, eval_sets, collator, accelerator, run_config, tokenizer, output_dir, completed_steps,
            best_score) -> TrainingOutcome:
    """Puts the best (or final) weights in `output_dir`, scores them on devel and test, writes all_results.json."""
    best_dir = output_dir / "best_model"
    unwrapped = accelerator.unwrap_model(model)
    if best_dir.is_dir():
        best = HSTLModel.from_pretrained(best_dir)
        unwrapped.load_state_dict(best.state_dict())
    if run_config.model.keep_only_trained_tasks:  # stage 2: the folder holds the target's family layer and head only
        unwrapped.keep_tasks([task.name for task in tasks])
    save_model_folder(accelerator, model, tokenizer, output_dir)
    model.eval()
    results = {"completed_steps": completed_steps, "num_processes": accelerator.num_processes,
               "best_devel_mean_f1": best_score,
               "devel": _evaluate(model, tasks, eval_sets, collator, accelerator, run_config, "validation"),
               "test": _evaluate(model, tasks, eval_sets, collator, accelerator, run_config, "test")}
    if accelerator.is_main_process:
        (output_dir / "all_results.json").write_text(json.dumps(results, indent=2))
        if best_dir.is_dir():
            shutil.rmtree(best_dir)
    accelerator.wait_for_everyone()
    return TrainingOutcome(str(output_dir), completed_steps, best_score, results)


# ---------------------------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------------------------


class _RunningLoss:
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


def _handle_nonfinite(run_config, accelerator, step, batch, task_names: list[str], what: str) -> None:
    batch_tasks = sorted({task_names[i] for i in batch["task_ids"].unique().tolist()})
    message = f"non-finite {what} at step {step + 1} on task(s) {batch_tasks}"
    if run_config.training.nonfinite_policy == "stop":
        raise NonFiniteError(message + "; stopping (nonfinite_policy: stop). The last checkpoint and best model are "
                             "untouched. Set training.nonfinite_policy: skip to skip such steps instead.")
    logger.warning(message + "; skipping this step (nonfinite_policy: skip)", main_process_only=True)


def _append_train_log(accelerator: Accelerator, output_dir: Path, record: dict[str, Any]) -> None:
    """One JSON line per logging step in OUTPUT_DIR/train_log.jsonl, whatever tracker is (or is not) in use."""
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


def _group_lrs(optimizer) -> tuple[float, float]:
    lrs = {group["name"].split("/")[0]: group["lr"] for group in optimizer.param_groups}
    return lrs.get("encoder", 0.0), lrs.get("heads", 0.0)


def _flat_tracker_config(run_config: RunConfig) -> dict[str, Any]:
    flat = {f"training/{key}": value for key, value in run_config.to_dict()["training"].items()
            if isinstance(value, (int, float, str, bool))}
    flat["tasks"] = ",".join(run_config.task_names())
    flat["encoder"] = str(run_config.model.encoder or run_config.model.init_from or "scratch")
    return flat
