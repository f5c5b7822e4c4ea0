"""Data efficiency on a corpus left out of stage 1 (the `hstl-data-efficiency` command):

    python -m eval.data_efficiency --config configs/data-efficiency.yaml --comparison_dir runs/compare-full \
        --output_dir runs/data-efficiency --cells_dir docs/data-efficiency-cells --results_prefix docs/data-efficiency

See `hstl/commands/data_efficiency.py`.
"""

import sys

from hstl.commands.data_efficiency import main

if __name__ == "__main__":
    sys.exit(main())
