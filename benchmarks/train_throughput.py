"""Training throughput of a 14-head HSTL model against a single-task model with the same encoder and batches.

    python benchmarks/train_throughput.py            # full settings, a few minutes on 2 CPU cores
    python benchmarks/train_throughput.py --quick    # smoke test

A step is what `hstl.training` does per batch: forward with labels, backward, gradient clipping, AdamW step (the
package's `build_optimizer` groups), zero_grad. All variants train on the same batches of real sentences (pretrained
MiniLM-L6 encoder, dropout on), so their words/s compare the model code paths only:

    single_task       a model with one head; every step is that task
    mtl_homogeneous   the 14-head model; step i is one task, cycling through all 14 (the default `batch_mode`)
    mtl_mixed         the 14-head model; the rows of each batch cycle through all 14 tasks (`batch_mode: mixed`)

Output: words/s of each variant as comment lines, then `RATIO train_mtl_mixed_vs_st <x>` and
`RATIO train_mtl_vs_st <x>` (homogeneous multi-task words/s over single-task words/s).

A second comparison (`--only grouping`) trains two copies of the single-task model on the same windows of real
sentences, one epoch each, batched by the package's `MultiTaskBatchSampler` without and with length grouping
(`training.group_by_length`):

    random    shuffled batches, padded to their longest window
    grouped   the same rows in length-grouped batches (megabatches of 50 batches sorted by length, shuffled order)

and prints `RATIO train_grouped_vs_random <x>` (grouped words/s over random words/s), last.
"""

from __future__ import annotations

import argparse
import copy
import functools
from collections.abc import Callable

import torch

import _common
from modeling_hstl import HSTLModel
from windows_hstl import HSTLDataCollator
from hstl.run_config import ModelSpec, RunConfig
from hstl.sampling import MultiTaskBatchSampler
from hstl.training import build_optimizer


FULL = {"batch_size": 16, "max_length": 128, "steps_per_round": 14, "rounds": 4, "grouping_steps": 50,
        "megabatch_batches": 50}
QUICK = {"batch_size": 2, "max_length": 48, "steps_per_round": 2, "rounds": 1, "grouping_steps": 4,
         "megabatch_batches": 2}
COMPARISONS = ("heads", "grouping")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _common.add_common_arguments(parser)
    parser.add_argument("--batch_size", type=int, default=None, help="Sentences per step (default 16, as training).")
    parser.add_argument("--steps_per_round", type=int, default=None,
                        help="Training steps per variant per round (default 14: each task once in homogeneous mode).")
    parser.add_argument("--grouping_steps", type=int, default=None,
                        help="Steps per round of the grouping comparison (default 50: one megabatch).")
    parser.add_argument("--only", choices=COMPARISONS, default=None,
                        help="Run one comparison: heads (multi-task vs single-task) or grouping (length-grouped vs "
                             "random batches); default both.")
    return parser.parse_args()


def homogeneous_task_ids(batch_rows: list[int], num_tasks: int) -> list[torch.Tensor]:
    """Step i trains task i mod num_tasks on all its `batch_rows[i]` rows."""
    return [torch.full((rows,), step % num_tasks, dtype=torch.long) for step, rows in enumerate(batch_rows)]


def mixed_task_ids(batch_rows: list[int], num_tasks: int) -> list[torch.Tensor]:
    """The rows of all steps, taken in order, cycle through the tasks: a batch holds min(its rows, num_tasks) tasks."""
    first_rows = [sum(batch_rows[:step]) for step in range(len(batch_rows))]
    return [torch.arange(first, first + rows) % num_tasks for first, rows in zip(first_rows, batch_rows)]


def training_steps(model: HSTLModel, batches: list[dict], task_ids: list[torch.Tensor]) -> list[Callable[[], None]]:
    """One function per batch, each running a training step on it with `task_ids[i]` as the tasks of batch i."""
    run_config = RunConfig(model=ModelSpec(), tasks=[])  # the default learning rates and clipping norm
    optimizer = build_optimizer(model, run_config)
    model.train()

    def step(batch: dict, step_task_ids: torch.Tensor) -> None:
        outputs = model(**{**batch, "task_ids": step_task_ids}, decode=False)
        outputs.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), run_config.training.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad()

    return [functools.partial(step, batch, step_task_ids) for batch, step_task_ids in zip(batches, task_ids)]


def compare_heads(tokenizer, settings: dict) -> None:
    """Multi-task (14 heads, homogeneous and mixed batches) against single-task training on the same batches."""
    batch_size, num_steps = settings["batch_size"], settings["steps_per_round"]
    sentences = _common.load_sentences("train", batch_size * num_steps)
    batches = _common.collate_batches(tokenizer, sentences, batch_size, settings["max_length"], with_labels=True,
                                      length_sorted=False)[:num_steps]  # a sentence cut into windows adds rows
    tasks = _common.paper_task_dicts()
    multi_task_model = HSTLModel.from_encoder(str(_common.minilm_path()), tasks=tasks)
    single_task_model = HSTLModel.from_encoder(str(_common.minilm_path()), tasks=[tasks[1]])
    batch_rows = [len(batch["input_ids"]) for batch in batches]
    variants = {
        "single_task": training_steps(single_task_model, batches, homogeneous_task_ids(batch_rows, num_tasks=1)),
        "mtl_homogeneous": training_steps(multi_task_model, batches, homogeneous_task_ids(batch_rows, len(tasks))),
        # A copy of its own, so that the mixed variant does not share optimizer steps with the homogeneous one.
        "mtl_mixed": training_steps(copy.deepcopy(multi_task_model), batches, mixed_task_ids(batch_rows, len(tasks))),
    }
    num_words = _common.count_words(batches)
    print(f"# {len(tasks)} tasks over {len({task['family'] for task in tasks})} families; {num_steps} steps of "
          f"{batch_size} sentences ({num_words} words) per round; {settings['rounds']} rounds; MiniLM-L6 encoder")
    words_per_second = _words_per_second(variants, {name: num_words for name in variants}, settings["rounds"])
    _common.print_ratio("train_mtl_mixed_vs_st", words_per_second["mtl_mixed"] / words_per_second["single_task"])
    _common.print_ratio("train_mtl_vs_st", words_per_second["mtl_homogeneous"] / words_per_second["single_task"])


def sampler_batches(tokenizer, features: list[dict], batch_size: int, num_steps: int, megabatch_batches: int,
                    grouped: bool) -> list[dict]:
    """`num_steps` collated batches of `features` in the order the package's sampler gives them (seed 0)."""
    lengths = [len(feature["input_ids"]) for feature in features]
    sampler = MultiTaskBatchSampler([len(features)], batch_size, seed=0, num_batches=num_steps,
                                    lengths=lengths if grouped else None, megabatch_batches=megabatch_batches)
    collator = HSTLDataCollator(tokenizer)
    return [collator([features[index] for index in batch]) for batch in sampler]


def compare_grouping(tokenizer, settings: dict) -> None:
    """Length-grouped against random batches: the same windows, the same model, one epoch each per round."""
    batch_size, num_steps = settings["batch_size"], settings["grouping_steps"]
    sentences = _common.load_sentences("train", batch_size * num_steps)
    features = _common.encode_features(tokenizer, sentences, settings["max_length"], with_labels=True)
    batches = {
        name: sampler_batches(tokenizer, features, batch_size, num_steps, settings["megabatch_batches"],
                              grouped=name == "grouped")
        for name in ("random", "grouped")
    }
    num_words = {name: _common.count_words(variant_batches) for name, variant_batches in batches.items()}
    assert num_words["random"] == num_words["grouped"], f"both variants must see the same rows, got {num_words}"
    padded = {name: sum(batch["input_ids"].numel() for batch in variant_batches)
              for name, variant_batches in batches.items()}
    print(f"# grouping: {num_steps} steps of {batch_size} windows ({num_words['random']} words) per round; "
          f"sub-token slots incl. padding: random {padded['random']}, grouped {padded['grouped']}; "
          f"{settings['rounds']} rounds; MiniLM-L6 encoder, one head")
    single_task_model = HSTLModel.from_encoder(str(_common.minilm_path()), tasks=[_common.paper_task_dicts()[2]])
    variants = {
        name: training_steps(model, batches[name], homogeneous_task_ids(
            [len(batch["input_ids"]) for batch in batches[name]], num_tasks=1))
        for name, model in (("random", single_task_model), ("grouped", copy.deepcopy(single_task_model)))
    }
    words_per_second = _words_per_second(variants, num_words, settings["rounds"])
    _common.print_ratio("train_grouped_vs_random", words_per_second["grouped"] / words_per_second["random"])


def _words_per_second(variants: dict, num_words: dict[str, int], rounds: int) -> dict[str, float]:
    """Times the variants side by side and prints and returns each one's words/s."""
    seconds = _common.time_interleaved(variants, rounds=rounds)
    words_per_second = {name: num_words[name] / value for name, value in seconds.items()}
    for name, value in words_per_second.items():
        print(f"# {name}: {value:.1f} words/s (median round {seconds[name]:.2f} s)")
    return words_per_second


def main() -> None:
    args = parse_args()
    settings = {**(QUICK if args.quick else FULL)}
    settings.update({key: value for key in ("batch_size", "steps_per_round", "rounds", "grouping_steps")
                     if (value := getattr(args, key)) is not None})
    _common.setup_run(args)
    tokenizer = _common.load_tokenizer()
    if args.only in (None, "heads"):
        compare_heads(tokenizer, settings)
    if args.only in (None, "grouping"):
        compare_grouping(tokenizer, settings)


if __name__ == "__main__":
    main()
