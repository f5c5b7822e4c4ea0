"""Training-step time of the one-head MiniLM model with 1 and with 2 torch threads, side by side.

    python benchmarks/threads_under_load.py
    python benchmarks/threads_under_load.py --quick    # smoke test: 2 batches, 2 rounds; numbers mean nothing

Forward with labels and backward on 6 batches of 16 real training sentences, 3 rounds, the order of the two thread
counts alternating from round to round. On a 2-core machine shared with other jobs, 2 threads per process
oversubscribe the cores and OpenMP's spinning barriers stall. Last line: `RATIO train_1thread_vs_2threads <x>`, the
median 2-thread step time over the median 1-thread step time (above 1: one thread is faster).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import _common
from modeling_hstl import HSTLModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 batches and 2 rounds for a smoke test.")
    args = parser.parse_args()
    num_batches, rounds = (2, 2) if args.quick else (6, 3)
    tokenizer = _common.load_tokenizer()
    batches = _common.collate_batches(tokenizer, _common.load_sentences("train", 16 * num_batches), 16, 128,
                                      with_labels=True, length_sorted=False)[:num_batches]
    model = HSTLModel.from_encoder(str(_common.minilm_path()), tasks=[_common.paper_task_dicts()[2]])
    model.train()
    step_seconds: dict[int, list[float]] = {1: [], 2: []}
    for round_index in range(rounds):
        for threads in (1, 2) if round_index % 2 == 0 else (2, 1):
            torch.set_num_threads(threads)
            for batch in batches:
                started = time.perf_counter()
                model(**batch, decode=False).loss.backward()  # the collator's task_ids: 0, the model's one task
                model.zero_grad()
                step_seconds[threads].append(time.perf_counter() - started)
    for threads, seconds in step_seconds.items():
        print(f"# {threads} thread(s): median step {statistics.median(seconds):.2f} s over {len(seconds)} steps")
    _common.print_ratio("train_1thread_vs_2threads",
                        statistics.median(step_seconds[2]) / statistics.median(step_seconds[1]))


if __name__ == "__main__":
    main()
