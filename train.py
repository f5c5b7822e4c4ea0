#!/usr/bin/env python
"""Stage 1 of hierarchical shared transfer learning: train one HSTL model on many corpora at once (the `hstl-train`
command):

    accelerate launch train.py --config configs/demo.yaml --output_dir runs/demo
    python train.py --config configs/demo.yaml --output_dir runs/demo        # one process works too

See `hstl/commands/train.py`.
"""

import sys

from hstl.commands.train import main, run_cli  # noqa: F401 (run_cli: for callers that wrap `main` themselves)

if __name__ == "__main__":
    sys.exit(main())
