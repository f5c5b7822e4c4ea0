"""Evaluate a model folder's heads on chosen corpora and splits (the `hstl-evaluate` command):

    python -m eval.evaluate_model --model runs/demo --config configs/demo.yaml --output_dir runs/demo/evaluation

See `hstl/commands/evaluate.py`.
"""

import sys

from hstl.commands.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
