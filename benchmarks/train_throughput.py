"""Training throughput of a 14-head HSTL model against a single-task model with the same encoder and batches.

    python benchmarks/train_throughput.py            # full settings, a few minutes on 2 CPU cores
    python benchmarks/train_throughput.py --quick    # smoke test

A step is what `hstl.training` does per batch: forward with labels, backward, gradient clipping, AdamW step (the
package's `build_optimizer` groups), zero_grad. All variants train on the same batches of real sentences (pretrained
MiniLM-L6 encoder, dropout on), so their words/s compare the model code paths only:

    single_task       a model with one head; every step is that task
    mtl_homogeneous   the 14-head model; step i is one task, cycling through all 14 (the default `batch_mode`)
    mtl_mixed         the 14-head model; the rows of each batch cycle through all 14 tasks (`batch_mode: mixed`)

Output: words/s of each variant as comment lines, then `RATIO train_mtl_mixed_vs_st <x>` and, last,
`RATIO train_mtl_vs_st <x>` (homogeneous multi-task words/s over single-task words/s).
"""

from __future__ import annotations

import argparse
import copy
import functools
from collections.abc import Callable

import torch

import _common
from modeling_hstl import HSTLModel
from hstl.run_config import ModelSpec, RunConfig
from hstl.training import build_optimizer


FULL = {"batch_size": 16, "max_length": 128, "steps_per_round": 14, "rounds": 4}
QUICK = {"batch_size": 2, "max_length": 48, "steps_per_round": 2, "rounds": 1}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _common.add_common_arguments(parser)
    parser.add_argument("--batch_size", type=int, default=None, help="Sentences per step (default 16, as training).")
    parser.add_argument("--steps_per_round", type=int, default=None,
                        help="Training steps per variant per round (default 14: each task once in homogeneous mode).")
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


def main() -> None:
    args = parse_args()
    settings = {**(QUICK if args.quick else FULL)}
    settings.update({key: value for key in ("batch_size", "steps_per_round", "rounds")
                     if (value := getattr(args, key)) is not None})
    _common.setup_run(args)
    batch_size, num_steps = settings["batch_size"], settings["steps_per_round"]
    tokenizer = _common.load_tokenizer()
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
    seconds = _common.time_interleaved(variants, rounds=settings["rounds"])
    words_per_second = {name: num_words / value for name, value in seconds.items()}
    for name, value in words_per_second.items():
        print(f"# {name}: {value:.1f} words/s (median round {seconds[name]:.2f} s)")
    _common.print_ratio("train_mtl_mixed_vs_st", words_per_second["mtl_mixed"] / words_per_second["single_task"])
    _common.print_ratio("train_mtl_vs_st", words_per_second["mtl_homogeneous"] / words_per_second["single_task"])


if __name__ == "__main__":
    main()
