"""`hstl-data-efficiency` (and `python -m eval.data_efficiency`): data efficiency on a corpus left out of stage 1,
fine-tuning from the comparison's stage-1 models against training from the plain encoder, on 10/25/50/100 % of the
corpus's training sentences, several seeds.

    hstl-data-efficiency --config configs/data-efficiency.yaml --comparison_dir runs/compare-full \
        --output_dir runs/data-efficiency --cells_dir docs/data-efficiency-cells --results_prefix docs/data-efficiency

The from_stage1 runs need the comparison's stage-1 models (COMPARISON_DIR/runs/stage1/seed<k>) of the same seeds;
`--methods plain_encoder` runs the others anywhere. Writes OUTPUT_DIR/data_efficiency.{json,md,png}; interrupt it at
any time, the next invocation does only what is left (and reruns, with a larger budget, the unconverged cells of the
methods in the config's `rerun_unconverged`). `--report_only` rebuilds the reports from the finished cells alone (no
training, no stage-1 model):

    hstl-data-efficiency --config configs/data-efficiency.yaml --output_dir runs/data-efficiency \
        --cells_dir docs/data-efficiency-cells --report_only --results_prefix docs/data-efficiency
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli import run_cli
from ..experiments.data_efficiency import METHODS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hstl-data-efficiency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="Data-efficiency config (YAML), e.g. configs/data-efficiency.yaml.")
    parser.add_argument("--comparison_dir", default=None,
                        help="Output folder of the comparison whose stage-1 models the from_stage1 runs start from "
                             "(required unless --report_only).")
    parser.add_argument("--output_dir", required=True, help="Where runs, cell results and the table go.")
    parser.add_argument("--cells_dir", default=None,
                        help="Where finished cells' records go and are looked up (default: OUTPUT_DIR/cells), e.g. "
                             "docs/data-efficiency-cells under version control; a cell found there is not run again.")
    parser.add_argument("--methods", nargs="+", default=None, choices=list(METHODS),
                        help="Run only these starts (default both): plain_encoder needs no stage-1 model.")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="Override the config's seeds.")
    parser.add_argument("--report_only", action="store_true", help="Only rebuild the reports from finished cells.")
    parser.add_argument("--results_prefix", default=None,
                        help="Also write the summary to PREFIX.json, PREFIX.md and PREFIX.png, e.g. docs/data-efficiency.")
    args = parser.parse_args(argv)
    if args.comparison_dir is None and not args.report_only:
        parser.error("--comparison_dir is required (the comparison whose stage-1 models from_stage1 starts from), "
                     "unless --report_only")
    return args


def run(argv: list[str] | None = None) -> int:
    """The command, user errors raised (`main` turns them into one line and exit status 2)."""
    args = parse_args(argv)
    from ..experiments.cells import cells_folder
    from ..experiments.data_efficiency import (
        format_data_efficiency_markdown, load_data_efficiency_config, run_data_efficiency, summarize_data_efficiency,
        write_data_efficiency_reports,
    )

    config = load_data_efficiency_config(args.config)
    if args.seeds:
        config.seeds = args.seeds
    if args.report_only:
        summary = summarize_data_efficiency(cells_folder(Path(args.output_dir), args.cells_dir), config)
        write_data_efficiency_reports(summary, Path(args.output_dir))
    else:
        summary = run_data_efficiency(config, args.output_dir, args.comparison_dir, cells_dir=args.cells_dir,
                                      methods=args.methods)
    if args.results_prefix:
        prefix = Path(args.results_prefix)
        write_data_efficiency_reports(summary, prefix.parent, prefix.name)
    print(format_data_efficiency_markdown(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Runs the command; a user error prints one `error: ...` line and returns 2."""
    return run_cli(lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
