"""Tag a corpus's test split as its CoNLL sentences and as running text, and compare the F1s (text-in within 1.0
point of CoNLL-in) and the sentence boundaries:

    python -m eval.text_vs_conll --model runs/demo --corpus ../shared/data/bioner/NCBI-disease --head NCBI-disease

See `hstl/commands/text_vs_conll.py`.
"""

import sys

from hstl.commands.text_vs_conll import main

if __name__ == "__main__":
    sys.exit(main())
