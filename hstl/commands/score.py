"""`hstl-score` (and `python -m eval.score`): strict entity-level scores of a predicted corpus file against a gold one.

    hstl-score GOLD.tsv PRED.tsv [--output scores.json] [--errors errors.json]

Both files are token-per-line IOB2 (`token<TAB>label`, blank line between sentences; `-DOCSTART-` lines are document
markers and are skipped in both). They must hold the same sentences with the same tokens: the first difference is
reported as `error: PRED.tsv:LINE: expected token 'x' (GOLD.tsv:LINE), got 'y'` and the exit status is 2. The
scores are those of `hstl.scoring` (conlleval chunk rules, micro-averaged, equal to seqeval's default mode).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from ..evaluation import score_files

USER_ERROR_EXIT_STATUS = 2


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line arguments; `argv` defaults to `sys.argv[1:]`."""
    parser = argparse.ArgumentParser(
        prog="hstl-score",
        description="Strict entity-level precision, recall and F1 of predicted IOB2 labels against gold ones.",
    )
    parser.add_argument(
        "gold", type=Path, help="Gold corpus file: token<TAB>label lines, a blank line between sentences."
    )
    parser.add_argument(
        "pred",
        type=Path,
        help="Predicted corpus file in the same format, with the same sentences and tokens as the gold file.",
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="Also write the scores JSON to this file (created or overwritten)."
    )
    parser.add_argument(
        "--errors",
        type=Path,
        default=None,
        help="Write false positives and false negatives (sentence index, type, token span, text) as JSON to this file.",
    )
    return parser.parse_args(argv)


def _write_json(path: Path, content: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _one_line(error: Exception) -> str:
    """The message for an `error: ...` line; an OSError's own str() adds its errno, which users do not need."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return " ".join(str(error).split())


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Prints the scores JSON; on a user error prints one `error: ...` line to stderr and returns 2."""
    args = parse_args(argv)
    try:
        scorer = score_files(args.gold, args.pred)
        scores = scorer.result()
        if args.output is not None:
            _write_json(args.output, scores)
        if args.errors is not None:
            errors = {"false_positives": scorer.false_positives, "false_negatives": scorer.false_negatives}
            _write_json(args.errors, errors)
    except (ValueError, OSError) as error:  # CorpusFormatError is a ValueError; OSError: a missing or unwritable file
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return USER_ERROR_EXIT_STATUS
    print(json.dumps(scores, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
