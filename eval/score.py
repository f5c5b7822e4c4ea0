"""Strict entity-level scores of a predicted corpus file against a gold one.

Usage, from the repository root:

    python -m eval.score GOLD.tsv PRED.tsv [--output scores.json] [--errors errors.json]

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

from hstl.data import Sentence, read_conll
from hstl.scoring import EntityScorer

USER_ERROR_EXIT_STATUS = 2


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line arguments; `argv` defaults to `sys.argv[1:]`."""
    parser = argparse.ArgumentParser(
        prog="python -m eval.score",
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


def _token_mismatch(gold_path: Path, pred_path: Path, gold: Sentence, pred: Sentence) -> Optional[str]:
    """Where one predicted sentence departs from its gold sentence, as `PRED:LINE: expected ..., got ...`, or None.

    Token `i` of a sentence is on line `sentence.line + i` (a sentence's token lines are consecutive), and the line
    after its last token is the blank line (or end of file) that ends it.
    """
    end_of_sentence = None  # stands for the blank line after a sentence's last token
    for position in range(max(len(gold.tokens), len(pred.tokens))):
        gold_token = gold.tokens[position] if position < len(gold.tokens) else end_of_sentence
        pred_token = pred.tokens[position] if position < len(pred.tokens) else end_of_sentence
        if gold_token != pred_token:
            expected = "the end of the sentence" if gold_token is None else f"token {gold_token!r}"
            got = "the end of the sentence" if pred_token is None else repr(pred_token)
            return (
                f"{pred_path}:{pred.line + position}: expected {expected} ({gold_path}:{gold.line + position}), "
                f"got {got}"
            )
    return None


def check_same_text(gold_path: Path, pred_path: Path, gold: list[Sentence], pred: list[Sentence]) -> None:
    """Raises ValueError at the first sentence or token where the predicted file differs from the gold file."""
    for gold_sentence, pred_sentence in zip(gold, pred):
        mismatch = _token_mismatch(gold_path, pred_path, gold_sentence, pred_sentence)
        if mismatch is not None:
            raise ValueError(mismatch)
    if len(pred) < len(gold):
        raise ValueError(
            f"{pred_path}: expected {len(gold)} sentences (as in {gold_path}), got {len(pred)}; "
            f"the first missing one is at {gold_path}:{gold[len(pred)].line}"
        )
    if len(pred) > len(gold):
        raise ValueError(
            f"{pred_path}:{pred[len(gold)].line}: expected the end of the file ({gold_path} has {len(gold)} "
            f"sentences), got sentence {len(gold) + 1}"
        )


def score_files(gold_path: Path, pred_path: Path) -> EntityScorer:
    """Reads both files, checks they hold the same text, and scores every sentence.

    Raises:
        CorpusFormatError: naming the file and line of a malformed line (e.g. a label that is not IOB2).
        ValueError: naming both files and lines at the first sentence or token that differs.
        OSError: when a file cannot be read.
    """
    gold = read_conll(gold_path)
    pred = read_conll(pred_path)
    check_same_text(gold_path, pred_path, gold, pred)
    scorer = EntityScorer()
    for gold_sentence, pred_sentence in zip(gold, pred):
        scorer.add(gold_sentence.labels, pred_sentence.labels, tokens=gold_sentence.tokens)
    return scorer


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
