"""The CRF as a parallel scan over word positions against the loop over positions it replaces, side by side.

For each label count, one batch of windows (`--batch_size` rows, `--words` words at most, real lengths spread evenly
from 1 to `--words`) is decoded (Viterbi), its marginals computed (forward-backward) and its negative log-likelihood
computed with its gradient (the training loss), once by the loop over positions (`modeling_hstl._viterbi_loop`,
`_marginals_loop`, pytorch-crf's own `CRF.forward`) and once by the scan (`_viterbi_scan`, `_marginals_scan`,
`_negative_log_likelihood_scan`). Emissions and CRF scores are random: the work does not depend on their values.

Prints, per label count L and computation, the time and the number of tensor operations per call (each is a kernel
launch on a GPU, where the loop's count, a few per word, is what the scan removes), then
`RATIO crf_<viterbi|marginals|nll>_scan_vs_loop_L<L> <loop seconds / scan seconds>`
(above 1: the scan is faster on this machine); L = 3, the label count of most heads, comes last. On the CPU these
ratios are what `modeling_hstl.CPU_SCAN_MAX_LABELS` rests on. The marginals are also computed by the CPU's loop,
products of probabilities in float64 (`_marginals_product_loop`), with
`RATIO crf_marginals_product_vs_loop_L<L> <log-space loop seconds / product loop seconds>`.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/crf_scan.py --threads 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_common_arguments, setup_run, time_interleaved  # noqa: E402

import modeling_hstl  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torchcrf import CRF  # noqa: E402


def crf_variants(num_labels: int, batch_size: int, num_words: int, repeats: int) -> dict[str, dict[str, list]]:
    """{kind: {"loop": units, "scan": units}} for one label count; every unit runs the same inputs."""
    generator = torch.Generator().manual_seed(num_labels)
    crf = CRF(num_labels, batch_first=True)
    for parameter in crf.parameters():
        torch.nn.init.normal_(parameter, std=1.0, generator=generator)
    emissions = torch.randn(batch_size, num_words, num_labels, generator=generator) * 4
    lengths = torch.linspace(1, num_words, batch_size).round().long()
    word_mask = torch.arange(num_words).unsqueeze(0) < lengths.unsqueeze(1)
    labels = torch.randint(0, num_labels, (batch_size, num_words), generator=generator).masked_fill(~word_mask, 0)
    scores = (crf.start_transitions, crf.end_transitions, crf.transitions)

    def decode(function):
        return lambda: [function(*scores, emissions, word_mask) for _ in range(repeats)]

    def loss(function):
        def unit():
            for _ in range(repeats):
                trainable = emissions.clone().requires_grad_()
                function(trainable).sum().backward()
                crf.zero_grad(set_to_none=True)
        return unit

    with_grad_loop = lambda trainable: -crf(trainable, labels, mask=word_mask, reduction="none")  # noqa: E731
    with_grad_scan = lambda trainable: modeling_hstl._negative_log_likelihood_scan(  # noqa: E731
        crf, trainable, labels, word_mask)
    return {
        "viterbi": {"loop": decode(modeling_hstl._viterbi_loop), "scan": decode(modeling_hstl._viterbi_scan)},
        "marginals": {"loop": decode(modeling_hstl._marginals_loop), "scan": decode(modeling_hstl._marginals_scan),
                      "product": decode(modeling_hstl._marginals_product_loop)},
        "nll": {"loop": loss(with_grad_loop), "scan": loss(with_grad_scan)},
    }


class _OperatorCount(TorchDispatchMode):
    """Counts the tensor operations (ATen operators, each one kernel launch on a GPU) run inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def operator_count(unit) -> int:
    """Tensor operations of one call of `unit` (forward and, for the loss, backward: autograd runs them too)."""
    with _OperatorCount() as counter:
        unit()
    return counter.count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--batch_size", type=int, default=64, help="Windows per batch.")
    parser.add_argument("--words", type=int, default=48, help="Words of the longest window of the batch.")
    parser.add_argument("--label_counts", type=int, nargs="+", default=[11, 9, 5, 3],
                        help="Label counts to measure (the paper's heads have 3, 9, 11 and 33; 33 is beyond SCAN_MAX_LABELS).")
    args = parser.parse_args()
    if args.quick:
        args.batch_size, args.words, args.label_counts = 4, 6, [5, 3]
    rounds = args.rounds or (1 if args.quick else 7)
    repeats = 1 if args.quick else 5
    setup_run(args)
    print(f"# {args.batch_size} windows of up to {args.words} words; {repeats} calls per unit, {rounds} rounds")
    with torch.inference_mode(False):
        for num_labels in args.label_counts:
            for kind, variants in crf_variants(num_labels, args.batch_size, args.words, repeats).items():
                if kind != "nll":
                    variants = {name: [torch.no_grad()(unit)] for name, unit in variants.items()}
                else:
                    variants = {name: [unit] for name, unit in variants.items()}
                seconds = time_interleaved(variants, rounds=rounds)
                per_call = {name: 1000 * value / repeats for name, value in seconds.items()}
                operators = {name: operator_count(units[0]) // repeats for name, units in variants.items()}
                print(f"# L={num_labels} {kind}: loop {per_call['loop']:.2f} ms, {operators['loop']} tensor operations; "
                      f"scan {per_call['scan']:.2f} ms, {operators['scan']} tensor operations")
                if "product" in per_call:
                    print(f"# L={num_labels} {kind}: product loop {per_call['product']:.2f} ms, "
                          f"{operators['product']} tensor operations")
                    print(f"RATIO crf_{kind}_product_vs_loop_L{num_labels} {seconds['loop'] / seconds['product']:.3f}")
                print(f"RATIO crf_{kind}_scan_vs_loop_L{num_labels} {seconds['loop'] / seconds['scan']:.3f}")


if __name__ == "__main__":
    main()
