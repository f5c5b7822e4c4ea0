#!/usr/bin/env python
"""Tag CoNLL, plain-text or PubTator files with a trained HSTL model (the `hstl-predict` command):

    python predict.py --model runs/demo --input test.tsv --output test.pred.tsv

See `hstl/commands/predict.py` and `python predict.py --help`.
"""

import sys

from hstl.commands.predict import main

if __name__ == "__main__":
    sys.exit(main())
