"""CPU-hour estimate of configs/compare-full.yaml from short measured timings on this machine.

    python benchmarks/estimate_compare_full.py            # about 5 minutes on 2 idle cores

Measures, with the package's own training loop (`hstl.training.run_training`, length-grouped batches):
- seconds per training step of a single-task run on NCBI-disease (two runs stopped after `--short` and `--long`
  steps; the difference cancels loading, tokenizing and model set-up), and that set-up time;
- validation sentences tagged per second (`hstl.inference.tag_sentences`, eval batch size of the config).
Then multiplies by the step counts the comparison's runs take: each run stops early somewhere between its first
possible stop and its budget (`max_steps`), so the estimate is printed for both ends.
An untimed 1-step run first takes the process's one-off costs. Output: `# ...` lines with the measurements and
`ESTIMATE cpu_hours <low> <high>`.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hstl.experiments.cells import run_config_for  # noqa: E402
from hstl.experiments.config import load_comparison_config  # noqa: E402
from hstl.corpora import load_task_data  # noqa: E402
from hstl.training import LoopArguments, run_training  # noqa: E402


def timed_run(run_config, steps: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        run_training(run_config, LoopArguments(output_dir=folder, stop_after_steps=steps, cpu=True))
        return time.perf_counter() - started


def eval_sentences_per_second(run_config, model_source: str, count: int) -> float:
    from hstl.inference import WindowSettings, tag_sentences
    from modeling_hstl import HSTLModel

    from hstl.run_config import resolve_model_source
    from hstl.tokenization import load_tokenizer

    task = load_task_data(run_config)[0]
    sentences = [sentence.tokens for sentence in task.splits["validation"][:count]]
    model = HSTLModel.from_encoder(resolve_model_source(model_source), [{"name": task.name, "labels": task.labels,
                                                                         "family": task.family}])
    tokenizer = load_tokenizer(resolve_model_source(model_source))
    started = time.perf_counter()
    training = run_config.training
    tag_sentences(model.eval(), tokenizer, sentences, settings=WindowSettings(
        max_length=training.max_length, overlap=training.window_overlap, batch_size=training.eval_batch_size))
    return len(sentences) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "configs/compare-full.yaml"), help="Comparison config.")
    parser.add_argument("--short", type=int, default=2, help="Steps of the first timed run.")
    parser.add_argument("--long", type=int, default=12, help="Steps of the second timed run.")
    parser.add_argument("--eval_sentences", type=int, default=400, help="Validation sentences tagged for the rate.")
    args = parser.parse_args()
    if args.short < 1 or args.long <= args.short:
        parser.error(f"expected 1 <= --short < --long, got --short {args.short} --long {args.long}")
    config = load_comparison_config(args.config)
    corpus = next(c for c in config.corpora if c.name == "NCBI-disease")
    run_config = run_config_for(config, [corpus], config.training, 1, config.model)
    run_config.training.eval_steps = 0
    run_config.training.checkpointing_steps = 0
    timed_run(run_config, 1)  # untimed warm-up: the process's one-off costs (imports, first reads) would bias `short`
    short, long = timed_run(run_config, args.short), timed_run(run_config, args.long)
    try:
        step_seconds = per_step_seconds(short, long, args.short, args.long)
    except ValueError as error:
        sys.exit(f"estimate_compare_full.py: {error}")
    setup_seconds = short - args.short * step_seconds
    eval_rate = eval_sentences_per_second(run_config, config.model.encoder, args.eval_sentences)
    print(f"# {step_seconds:.2f} s per training step (batch {run_config.training.train_batch_size}), set-up "
          f"{setup_seconds:.0f} s per run, {eval_rate:.1f} validation sentences/s")
    print_estimate(config, step_seconds, setup_seconds, eval_rate)


def per_step_seconds(short_seconds: float, long_seconds: float, short: int, long: int) -> float:
    """Seconds per training step from two runs of `short` and `long` steps; a ValueError when the difference is not
    positive (the runs' noise exceeds the extra steps' time: never an estimate from a negative step time)."""
    step_seconds = (long_seconds - short_seconds) / (long - short)
    if step_seconds <= 0:
        raise ValueError(f"the runs of --short {short} and --long {long} steps took {short_seconds:.2f} s and "
                         f"{long_seconds:.2f} s: no positive time per step; raise --long")
    return step_seconds


def print_estimate(config, step_seconds: float, setup_seconds: float, eval_rate: float) -> None:
    """Seconds of every run of the comparison, at the earliest early stop and at the budget."""
    from hstl.corpora import load_task_data as load

    splits = {c.name: load(run_config_for(config, [c], config.training, 1, config.model))[0].splits
              for c in config.corpora}
    validation = {name: len(split.get("validation", [])) for name, split in splits.items()}

    def budget(spec, *names: str) -> int:  # num_train_epochs counted in sentences (windows are a few more)
        if spec.num_train_epochs is None:
            return spec.max_steps
        sentences = sum(len(splits[name]["train"]) for name in names)
        return math.ceil(spec.num_train_epochs * math.ceil(sentences / spec.train_batch_size)
                         / spec.gradient_accumulation_steps)

    runs = []  # (max_steps, eval_steps, patience, validation sentences per evaluation)
    seeds, targets = len(config.seeds), config.target_corpora()
    stage1 = config.stage1_training
    all_validation = sum(validation.values())
    everything = [c.name for c in config.corpora]
    runs += [(budget(stage1, *everything), stage1.eval_steps, stage1.early_stopping_patience, all_validation)] * seeds
    for corpus in targets:
        for spec in (config.training, config.finetune_training):
            runs += [(budget(spec, corpus.name), spec.eval_steps, spec.early_stopping_patience,
                      validation[corpus.name])] * seeds
    for name in config.finetune_only_targets or []:
        others = all_validation - validation[name]
        without = [other for other in everything if other != name]
        runs += [(budget(stage1, *without), stage1.eval_steps, stage1.early_stopping_patience, others)]
        spec = config.finetune_only_training or config.training
        runs += [(budget(spec, name), spec.eval_steps, spec.early_stopping_patience, validation[name])]

    def seconds(steps_of) -> float:
        total = 0.0
        for max_steps, eval_steps, patience, sentences in runs:
            steps = steps_of(max_steps, eval_steps, patience)
            total += setup_seconds + steps * step_seconds + (steps // eval_steps + 1) * sentences / eval_rate
        return total

    earliest = seconds(lambda max_steps, eval_steps, patience: min(max_steps, (patience + 1) * eval_steps))
    budget = seconds(lambda max_steps, eval_steps, patience: max_steps)
    print(f"# {len(runs)} training runs; test-set predictions not counted")
    print(f"ESTIMATE cpu_hours {earliest / 3600:.1f} {budget / 3600:.1f}")


if __name__ == "__main__":
    main()
