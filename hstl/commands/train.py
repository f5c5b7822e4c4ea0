"""`hstl-train` (and `train.py`): stage 1 of hierarchical shared transfer learning: train one HSTL model on many corpora
at once.

    accelerate launch train.py --config configs/demo.yaml --output_dir runs/demo
    python train.py --config configs/demo.yaml --output_dir runs/demo        # one process works too

The run config (YAML) names the tasks, their data and entity families, the model and the training settings; flags here
override a few of them and say where to write. The output folder is a model folder that loads as remote code:
`AutoModel.from_pretrained(output_dir, trust_remote_code=True)`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..cli import add_common_training_arguments, apply_overrides, finish_run, run_cli


logger = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hstl-train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="YAML run config, e.g. configs/demo.yaml.")
    add_common_training_arguments(parser)
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> int:
    """The command, user errors raised (`main` turns them into one line and exit status 2)."""
    args = parse_args(argv)
    from ..run_config import load_run_config

    run_config = apply_overrides(load_run_config(args.config), args)
    return finish_run(run_config, args)


def main(argv: list[str] | None = None) -> int:
    """Runs the command; a user error prints one `error: ...` line and returns 2."""
    return run_cli(lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
