"""`hstl-publish` (and `publish.py`): publish a trained HSTL model folder on the Hugging Face Hub, as remote code with a
model card and a pipeline.

    python publish.py --model runs/demo --repo_id user/hstl-demo --results runs/demo/evaluation/results.json
    python publish.py --model runs/demo --repo_id user/hstl-demo --dry-run /tmp/hstl-demo    # uploads nothing

The folder uploaded holds config.json (with `auto_map` and the custom pipelines), the remote-code group
(the `*_hstl.py` files of `hstl.remote_code.GROUP_MODULES`), the safetensors weights, the
tokenizer files, run_config.yaml and a README.md model card with the results. With `--dry-run OUT` that exact folder
is written to OUT instead: load it with `pipeline("token-classification", model="OUT", trust_remote_code=True)` to
check it before uploading.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli import run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hstl-publish", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="Model folder written by train.py or finetune.py.")
    parser.add_argument("--repo_id", required=True, help="Hub repository to publish to, as user/name (or org/name).")
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", type=Path, default=None, metavar="OUT",
                        help="Write the folder that would be uploaded to OUT (new or empty) and upload nothing.")
    parser.add_argument("--results", type=Path, default=None,
                        help="results.json of `python -m eval.evaluate_model` for the card's model-index (default: "
                             "the model folder's results.json, else the validation/test scores training left).")
    parser.add_argument("--private", action="store_true", help="Create the Hub repository as private.")
    parser.add_argument("--token", default=None, help="Hub token (default: the login cached by `hf auth login`).")
    parser.add_argument("--commit_message", default="Upload HSTL model", help="Message of the Hub commit.")
    args = parser.parse_args(argv)
    if args.repo_id.count("/") != 1 or not all(args.repo_id.split("/")):
        parser.error(f"--repo_id: expected user/name, got {args.repo_id!r}")
    return args


def run(argv: list[str] | None = None) -> int:
    """The command, user errors raised (`main` turns them into one line and exit status 2)."""
    args = parse_args(argv)
    from ..hub import assemble_model_repo, publish_model
    from ..modelcard import load_results

    results = load_results(args.results) if args.results is not None else None
    if args.dry_run is not None:
        files = assemble_model_repo(args.model, args.dry_run, args.repo_id, results)
        print(f"Wrote {len(files)} files to {args.dry_run.resolve()} (nothing uploaded): {', '.join(files)}")
        return 0
    url = publish_model(args.model, args.repo_id, results=results, token=args.token, private=args.private,
                        commit_message=args.commit_message)
    print(f"Published {args.repo_id}: {url}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Runs the command; a user error prints one `error: ...` line and returns 2."""
    return run_cli(lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
