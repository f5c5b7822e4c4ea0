"""Strict entity-level scores of a predicted corpus file against a gold one (the `hstl-score` command):

    python -m eval.score GOLD.tsv PRED.tsv [--output scores.json] [--errors errors.json]

See `hstl/commands/score.py`.
"""

import sys

from hstl.commands.score import main

if __name__ == "__main__":
    sys.exit(main())
