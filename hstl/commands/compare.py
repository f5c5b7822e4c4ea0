"""`hstl-compare` (and `python -m eval.compare`): run the paper's comparison (single-task, multi-task, fine-tuning only,
HSTL) on the corpora of a config.

    python -m eval.compare --config configs/compare-mini.yaml --output_dir runs/compare-mini

Writes OUTPUT_DIR/results.{json,md,png} (per target: test F1 x 100 per seed and method, mean ± std, gain over
single-task, each cell's convergence, the tests of HSTL against single-task and single_task_matched: paired bootstrap
over sentences and over documents or blocks with raw and Holm p, seed-level permutation, Welch and F-tests; steps and
wall time); `--results_prefix docs/results-full`
writes the same three files there too. Interrupt it at any time: finished cells are kept, interrupted runs resume from
their latest checkpoint, the next invocation does only what is left.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli import run_cli
from ..experiments.config import METHODS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hstl-compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="Comparison config (YAML), e.g. configs/compare-mini.yaml.")
    parser.add_argument("--output_dir", required=True, help="Where runs, cell results and the table go.")
    parser.add_argument("--cells_dir", default=None,
                        help="Where finished cells' records go and are looked up (default: OUTPUT_DIR/cells): small "
                             "files that a comparison spread over several machines keeps under version control, "
                             "e.g. docs/results-full-cells; a cell found there is not run again.")
    parser.add_argument("--report_only", action="store_true", help="Only rebuild the table from finished cells.")
    parser.add_argument("--methods", nargs="+", default=None, choices=METHODS, help="Override the config's methods.")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="Override the config's seeds.")
    parser.add_argument("--results_prefix", default=None,
                        help="Also write the summary to PREFIX.json, PREFIX.md and PREFIX.png, e.g. docs/results-full.")
    parser.add_argument("--max_steps", type=int, default=None,
                        help="Override training.max_steps, replacing training.num_train_epochs: the single-task "
                             "runs, finetune_only's stage 2 unless finetune_only_training is set, and the joint runs "
                             "(per corpus) unless stage1_training or stage1_max_steps is set; HSTL's stage 2 keeps "
                             "finetune_training. E.g. a single-task baseline with as many updates as HSTL's two "
                             "stages.")
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> int:
    """The command, user errors raised (`main` turns them into one line and exit status 2)."""
    args = parse_args(argv)
    from ..experiments.cells import run_comparison
    from ..experiments.config import load_comparison_config, override_comparison_config
    from ..experiments.report import format_markdown, write_reports
    from ..experiments.statistics import summarize

    config = override_comparison_config(load_comparison_config(args.config), methods=args.methods, seeds=args.seeds,
                                        max_steps=args.max_steps)
    if args.report_only:
        summary = summarize(args.output_dir, config, args.cells_dir)
        write_reports(summary, args.output_dir)
    else:
        summary = run_comparison(config, args.output_dir, cells_dir=args.cells_dir)
    if args.results_prefix:
        prefix = Path(args.results_prefix)
        write_reports(summary, prefix.parent, prefix.name)
    print(format_markdown(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Runs the command; a user error prints one `error: ...` line and returns 2."""
    return run_cli(lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
