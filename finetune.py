#!/usr/bin/env python
"""Stage 2 of hierarchical shared transfer learning: fine-tune a (multi-task) HSTL model on one target corpus, or on
each of several in turn, writing one model folder per target (the `hstl-finetune` command):

    # a corpus given by files (a task the model knows, or a new one: its head is built from the corpus's labels)
    python finetune.py --model runs/stage1 --train_file T.tsv --validation_file V.tsv --test_file E.tsv \
        --task NCBI-disease --family disease --output_dir runs/ncbi

See `hstl/commands/finetune.py`.
"""

import sys

from hstl.commands.finetune import main, run_cli  # noqa: F401 (run_cli: for callers that wrap `main` themselves)

if __name__ == "__main__":
    sys.exit(main())
