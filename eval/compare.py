"""Run the paper's comparison (single-task, multi-task, fine-tuning only, HSTL) on the corpora of a config (the
`hstl-compare` command):

    python -m eval.compare --config configs/compare-mini.yaml --output_dir runs/compare-mini

See `hstl/commands/compare.py`.
"""

import sys

from hstl.commands.compare import main, run_cli  # noqa: F401 (run_cli: for callers that wrap `main` themselves)

if __name__ == "__main__":
    sys.exit(main())
