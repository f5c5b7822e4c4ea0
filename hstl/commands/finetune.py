"""`hstl-finetune` (and `finetune.py`): stage 2 of hierarchical shared transfer learning: fine-tune a (multi-task) HSTL
model on one target corpus, or on each of several in turn, writing one model folder per target.

    # a corpus given by files (a task the model knows, or a new one: its head is built from the corpus's labels)
    python finetune.py --model runs/stage1 --train_file T.tsv --validation_file V.tsv --test_file E.tsv \
        --task NCBI-disease --family disease --output_dir runs/ncbi

    # every task of a run config in turn (OUTPUT_DIR/<task>/ each), e.g. the stage-1 config itself
    accelerate launch finetune.py --model runs/stage1 --config configs/demo.yaml --output_dir runs/stage2

    # a model on the Hub, at a branch, tag or commit
    python finetune.py --model user/hstl-stage1 --revision v1.0 --config configs/demo.yaml --output_dir runs/stage2

Each target's folder keeps the encoder, the target's family layer and its head; its run_config.yaml records the model
it started from (`model.init_from`: the folder, or the Hub id with `init_from_revision`, the commit), and its README.md
is the model card. The training loop is `hstl.training.run_training`, the same as train.py's.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

from ..cli import add_common_training_arguments, apply_overrides, finish_run, run_cli
from ..hub import model_source, resolve_model
from ..run_config import FREEZABLE, ModelSpec, RunConfig, RunConfigError, TaskSpec, TrainingSpec, load_run_config


# Fine-tuning defaults when no --config gives a training section: fewer steps and a gentler encoder learning rate than
# stage 1, evaluation and best-model selection on the target's validation split.
FINETUNE_DEFAULTS = TrainingSpec(
    max_steps=500, encoder_learning_rate=2e-5, head_learning_rate=5e-4, warmup_ratio=0.1, eval_steps=100,
    checkpointing_steps=100, keep_checkpoints=1, sampling_strategy="proportional", sampling_alpha=1.0,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hstl-finetune", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True,
                        help="The HSTL model to start from: a folder (a stage-1 output) or a Hub id (user/name), "
                             "fetched through the Hugging Face cache (offline: HF_HUB_OFFLINE=1).")
    parser.add_argument("--revision", default=None,
                        help="With a Hub id: the branch, tag or commit to start from (default: main); run_config.yaml "
                             "records the commit.")
    parser.add_argument("--config", default=None,
                        help="YAML run config: its tasks are the targets (unless --task) and its training section the "
                             "settings; of its model section only entity_types is used (the model is --model).")
    parser.add_argument("--task", default=None, help="Target task name (a head of the model, or a new one).")
    parser.add_argument("--family", default=None,
                        help="Entity family of the target; required for a new task, checked for a known one.")
    parser.add_argument("--train_file", default=None, help="Target training data (CoNLL/IOB, token TAB label).")
    parser.add_argument("--validation_file", default=None,
                        help="Target validation data (e.g. devel.tsv), for best-model selection.")
    parser.add_argument("--test_file", default=None, help="Target test data, scored at the end.")
    parser.add_argument("--tasks", nargs="+", default=None, help="With --config: fine-tune on these of its tasks only.")
    parser.add_argument("--freeze", nargs="+", default=None, choices=FREEZABLE,
                        help="Levels to freeze: embeddings, encoder, family, heads.")
    parser.add_argument("--encoder_learning_rate", type=float, default=None, help="Override the encoder's learning rate.")
    parser.add_argument("--head_learning_rate", type=float, default=None,
                        help="Override the learning rate of family layers, heads and CRF transitions.")
    add_common_training_arguments(parser)
    args = parser.parse_args(argv)
    if args.config is None and (args.task is None or args.train_file is None):
        parser.error("give --config, or --task with --train_file (and --validation_file to select the best model)")
    return args


def check_paths(args: argparse.Namespace, model_dir: Path) -> None:
    """The model folder (`--model` resolved) holds a config and the corpus files exist; else one line naming the
    argument."""
    if not (model_dir / "config.json").is_file():
        raise RunConfigError(f"--model: expected an HSTL model folder (a train.py output), got a folder without "
                             f"config.json: {model_dir}")
    for key in ("train_file", "validation_file", "test_file"):
        value = getattr(args, key)
        if value is not None and not Path(value).is_file():
            task = f" (task {args.task})" if args.task else ""
            raise RunConfigError(f"--{key}{task}: expected a corpus file, got no such file: {value}")


def _known_family(model_dir: Path, task: str) -> str | None:
    from .. import HSTLConfig

    config = HSTLConfig.from_pretrained(model_dir)
    return config.task(task)["family"] if task in config.task_names else None


def target_specs(args: argparse.Namespace, base: RunConfig | None, model_dir: Path) -> list[TaskSpec]:
    """The target tasks: from --task and the files, or from the config (optionally filtered by --tasks)."""
    if args.task is not None and args.train_file is not None:
        known_family = _known_family(model_dir, args.task)
        family = args.family or known_family
        if family is None:
            raise RunConfigError(f"--family: task {args.task!r} is new to {args.model}; name its entity family")
        if known_family is not None and args.family is not None and args.family != known_family:
            raise RunConfigError(
                f"--family: task {args.task!r} belongs to family {known_family!r} in {args.model}, got {args.family!r}"
            )
        return [TaskSpec(name=args.task, family=family, train_file=args.train_file,
                         validation_file=args.validation_file, test_file=args.test_file)]
    specs = base.tasks
    wanted = args.tasks or ([args.task] if args.task else None)
    if wanted:
        unknown = sorted(set(wanted) - {spec.name for spec in specs})
        if unknown:
            raise RunConfigError(f"--tasks: {unknown} not in {args.config}; its tasks: {[s.name for s in specs]}")
        specs = [spec for spec in specs if spec.name in wanted]
    return specs


def target_run_config(args: argparse.Namespace, base: RunConfig | None, spec: TaskSpec, model_dir: Path) -> RunConfig:
    training = copy.deepcopy(base.training if base is not None else FINETUNE_DEFAULTS)
    if args.freeze is not None:
        training.freeze = list(args.freeze)
    for key in ("encoder_learning_rate", "head_learning_rate"):
        if getattr(args, key) is not None:
            setattr(training, key, getattr(args, key))
    source = model_source(model_dir)  # the Hub id and commit, or the folder
    model_spec = ModelSpec(init_from=source["model"], init_from_revision=source.get("revision"),
                           keep_only_trained_tasks=True)
    entity_types = (base.model.hstl_config.get("entity_types") or {}) if base is not None else {}
    if spec.name in entity_types:  # the config's own entity types of the target, over the model's
        model_spec.hstl_config = {"entity_types": {spec.name: entity_types[spec.name]}}
    run_config = RunConfig(model=model_spec, tasks=[spec], training=training,
                           data_root=base.data_root if base is not None else str(Path.cwd()),
                           source=args.config or "finetune.py arguments")
    return apply_overrides(run_config, args)


def run(argv: list[str] | None = None) -> int:
    """The command, user errors raised (`main` turns them into one line and exit status 2)."""
    args = parse_args(argv)
    model_dir = resolve_model(args.model, args.revision)
    check_paths(args, model_dir)
    base = load_run_config(args.config) if args.config else None
    specs = target_specs(args, base, model_dir)
    output_dir = args.output_dir
    for spec in specs:
        # One target: the folder is OUTPUT_DIR itself; several: one folder per target below it.
        args.output_dir = output_dir if len(specs) == 1 else str(Path(output_dir) / spec.name)
        finish_run(target_run_config(args, base, spec, model_dir), args)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Runs the command; a user error prints one `error: ...` line and returns 2."""
    return run_cli(lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
