#!/usr/bin/env python
"""Publish a trained HSTL model folder on the Hugging Face Hub, as remote code with a model card and a pipeline (the
`hstl-publish` command):

    python publish.py --model runs/demo --repo_id user/hstl-demo --results runs/demo/evaluation/results.json
    python publish.py --model runs/demo --repo_id user/hstl-demo --dry-run /tmp/hstl-demo    # uploads nothing

See `hstl/commands/publish.py`.
"""

import sys

from hstl.commands.publish import main, run_cli  # noqa: F401 (run_cli: for callers that wrap `main` themselves)

if __name__ == "__main__":
    sys.exit(main())
