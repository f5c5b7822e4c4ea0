"""What the command-line scripts share: the training flags, config overrides, the end-of-run report and one way of
turning user errors into a one-line message and a non-zero exit code."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable

from .errors import USER_ERRORS, RunConfigError
from .run_config import RunConfig


def run_cli(main: Callable[[], int]) -> int:
    """Runs a script's `main`; a user error prints `error: ...` on stderr and exits with status 2."""
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%H:%M:%S",
                        level=logging.INFO)
    logging.getLogger("accelerate.checkpointing").setLevel(logging.WARNING)  # one line per file saved is noise
    try:
        return main()
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def add_common_training_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output_dir", required=True, help="Where the model folder, checkpoints and results go.")
    parser.add_argument("--data_root", default=None, help="Resolve relative data paths of the config against this folder.")
    parser.add_argument("--seed", type=int, default=None, help="Override training.seed.")
    parser.add_argument("--max_steps", type=int, default=None, help="Override training.max_steps (optimizer steps); replaces "
                        "training.num_train_epochs.")
    parser.add_argument("--train_batch_size", type=int, default=None,
                        help="Override training.train_batch_size (global, split across processes).")
    parser.add_argument("--eval_steps", type=int, default=None, help="Override training.eval_steps (0: only at the end).")
    parser.add_argument("--checkpointing_steps", type=int, default=None,
                        help="Override training.checkpointing_steps (0: no checkpoints).")
    parser.add_argument("--resume_from_checkpoint", default=None,
                        help="A checkpoint folder, or 'latest' for the newest complete one under OUTPUT_DIR/checkpoints. "
                             "The seed, batch size, accumulation, corpora and caps must be the checkpoint's. A finished "
                             "run (OUTPUT_DIR/all_results.json) is left as it is: its results are shown, exit status 0.")
    parser.add_argument("--overwrite_output_dir", action="store_true",
                        help="Train afresh into an OUTPUT_DIR that holds a run (its results, checkpoints or model): "
                             "that run's files are removed first. Without it (or --resume_from_checkpoint), such a "
                             "folder is refused.")
    parser.add_argument("--with_tracking", action="store_true", help="Log metrics through Accelerate's trackers.")
    parser.add_argument("--report_to", default="tensorboard",
                        help="Tracker for --with_tracking: tensorboard, wandb, comet_ml, mlflow, aim, clearml, all.")
    parser.add_argument("--mixed_precision", default=None, choices=["no", "fp16", "bf16"],
                        help="Mixed precision; default: what `accelerate config`/`accelerate launch` says.")
    parser.add_argument("--cpu", action="store_true", help="Train on the CPU even when a GPU is present.")
    parser.add_argument("--push_to_hub", action="store_true", help="Upload the final model folder to the Hub.")
    parser.add_argument("--hub_model_id", default=None, help="Hub repository id for --push_to_hub (user/name).")
    parser.add_argument("--hub_token", default=None, help="Hub token for --push_to_hub (default: the cached login).")
    parser.add_argument("--hub_private", action="store_true", help="Create the Hub repository as private.")


def apply_overrides(run_config: RunConfig, args: argparse.Namespace) -> RunConfig:
    """Flags given on the command line win over the config file; the saved run_config.yaml shows the result."""
    if args.data_root is not None:
        run_config.data_root = str(Path(args.data_root).resolve())
    for key in ("seed", "max_steps", "train_batch_size", "eval_steps", "checkpointing_steps"):
        value = getattr(args, key)
        if value is not None:
            lowest = 1 if key in ("max_steps", "train_batch_size") else 0  # 0 steps between evaluations: none
            if key != "seed" and value < lowest:
                raise RunConfigError(f"--{key}: expected a number {'above' if lowest else 'of at least'} 0, got "
                                     f"{value}")
            setattr(run_config.training, key, value)
    if args.max_steps is not None:  # a step budget on the command line replaces the config's epochs
        run_config.training.num_train_epochs = None
    if args.push_to_hub and not args.hub_model_id:
        raise RunConfigError("--push_to_hub: expected --hub_model_id user/name, got none")
    return run_config


def finish_run(run_config: RunConfig, args: argparse.Namespace) -> int:
    """Trains, prints per-task validation F1 and where the model is, and pushes it when asked."""
    from .training import LoopArguments, run_training

    outcome = run_training(
        run_config,
        LoopArguments(
            output_dir=args.output_dir, resume_from_checkpoint=args.resume_from_checkpoint,
            overwrite_output_dir=args.overwrite_output_dir,
            with_tracking=args.with_tracking, report_to=args.report_to, mixed_precision=args.mixed_precision,
            cpu=args.cpu, stop_after_steps=getattr(args, "stop_after_steps", None),
        ),
    )
    if not outcome.results:
        return 0
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(format_results(outcome.results))
        print(f"Model folder: {Path(outcome.output_dir).resolve()}")
        if args.push_to_hub:
            from .hub import publish_model

            url = publish_model(outcome.output_dir, args.hub_model_id, token=args.hub_token, private=args.hub_private)
            print(f"Pushed to {url}")
    return 0


def format_results(results: dict) -> str:
    """A small table of validation (and test) F1 per task."""
    lines = [f"{'task':<24} {'validation F1':>13} {'test F1':>9}"]
    validation, test = results.get("validation", {}), results.get("test", {})
    for name in [key for key in validation if key != "mean_f1"] or [key for key in test if key != "mean_f1"]:
        validation_f1 = f"{validation[name]['f1']:.4f}" if name in validation else "-"
        test_f1 = f"{test[name]['f1']:.4f}" if name in test else "-"
        lines.append(f"{name:<24} {validation_f1:>13} {test_f1:>9}")
    if "mean_f1" in validation:
        lines.append(f"{'mean':<24} {validation['mean_f1']:>13.4f} {test.get('mean_f1', float('nan')):>9.4f}")
    return "\n".join(lines)
