"""`python -m eval.text_vs_conll`: does tagging running text score as tagging the corpus's own sentences?

    python -m eval.text_vs_conll --model runs/demo --corpus ../shared/data/bioner/NCBI-disease --head NCBI-disease
    python -m eval.text_vs_conll --model runs/demo --corpus ../shared/data/bioner/NCBI-disease --head NCBI-disease \
        --pubtator NCBItestset_corpus.txt --output_dir runs/demo/text-vs-conll

One head tags the corpus's CoNLL test split ("CoNLL-in", `hstl.evaluation.score_head`) and the same corpus as running
text ("text-in": predict.py's text path, with its sentence splitter, word tokenizer and windowing). The running text
is the PubTator file given with `--pubtator` (its mentions are the gold), else the test split rebuilt as text
(`hstl.formats.gold_text.documents_from_conll`: detokenized sentences in pseudo-abstracts of 10). Both are scored at
mention level (text-in: exact character spans). Prints both F1s, their difference and how many of the corpus's
sentence boundaries the splitter found, missed and added; exits with status 1 when |difference| > 1.0 point. With
`--output_dir`, writes `text_vs_conll.json`: the scores, every missed and added boundary with the text around it, and
text-in's false negatives and positives.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from ..cli import run_cli
from ..data import read_split_dir

CONTEXT_CHARACTERS = 40
"""Characters shown on each side of a missed or added boundary in text_vs_conll.json."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="text_vs_conll", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="Model folder (config.json, weights, tokenizer).")
    parser.add_argument("--corpus", required=True, type=Path,
                        help="Corpus folder holding test.tsv (IOB2, one token per line), e.g. "
                             "../shared/data/bioner/NCBI-disease.")
    parser.add_argument("--head", required=True, help="The model's head that tags the corpus (e.g. NCBI-disease).")
    parser.add_argument("--pubtator", type=Path, default=None,
                        help="The corpus's test set as a PubTator file (e.g. NCBItestset_corpus.txt); default: the "
                             "test split rebuilt as running text.")
    parser.add_argument("--sentences_per_document", type=int, default=10,
                        help="Without --pubtator: sentences per rebuilt pseudo-abstract (default 10).")
    parser.add_argument("--num_workers", type=int, default=0,
                        help="predict.py's --num_workers for the text-in run (default 0: this process only).")
    parser.add_argument("--output_dir", type=Path, default=None,
                        help="Also write text_vs_conll.json here (created if needed).")
    return parser


def gold_documents(args: argparse.Namespace, sentences) -> tuple[list, str]:
    """The running text with gold spans, and how it was made (for the report)."""
    from ..formats.gold_text import align_sentence_starts, documents_from_conll, read_pubtator_gold

    if args.pubtator is not None:
        documents = read_pubtator_gold(args.pubtator)
        aligned = align_sentence_starts(documents, sentences)
        return documents, (f"{args.pubtator}: {len(documents)} documents ({aligned} with sentence boundaries from "
                           f"test.tsv)")
    documents = documents_from_conll(sentences, "test.tsv", args.sentences_per_document)
    return documents, (f"test.tsv rebuilt as text: {len(documents)} pseudo-abstracts of "
                       f"{args.sentences_per_document} sentences")


def _context(documents, name: str, offset: int) -> str:
    document = next(document for document in documents if document.name == name)
    passage = max((passage for passage in document.passages if passage.offset <= offset), key=lambda p: p.offset)
    at = offset - passage.offset
    return (passage.text[max(0, at - CONTEXT_CHARACTERS) : at] + " || " +
            passage.text[at : at + CONTEXT_CHARACTERS])


def report(result: dict, source: str) -> str:
    conll_in, text_in, boundaries = result["conll_in"], result["text_in"], result["boundaries"]
    lines = [f"running text: {source}"]
    for name, scores in (("CoNLL-in", conll_in), ("text-in", text_in)):
        lines.append(f"{name:9} F1 {100 * scores['f1']:6.2f}  (precision {100 * scores['precision']:.2f}, recall "
                     f"{100 * scores['recall']:.2f}; {scores['num_gold']} gold, {scores['num_pred']} predicted)")
    lines.append(f"difference (text-in - CoNLL-in): {result['difference']:+.2f} points")
    lines.append(f"sentence boundaries inside passages: {boundaries['gold']} in the corpus, {boundaries['found']} "
                 f"found, {boundaries['missed']} missed, {boundaries['added']} added"
                 + (f"; {boundaries['documents_without_gold_boundaries']} documents without corpus boundaries"
                    if boundaries["documents_without_gold_boundaries"] else ""))
    if result["within_limit"]:
        lines.append("OK: text-in F1 is within 1.0 point of CoNLL-in F1")
    else:
        lines.append("FAILED: text-in F1 differs from CoNLL-in F1 by more than 1.0 point")
    return "\n".join(lines)


def run(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..evaluation import compare_text_and_conll
    from ..inference.streaming import PredictionOptions

    splits = read_split_dir(args.corpus)
    if "test" not in splits:
        raise FileNotFoundError(f"--corpus: expected {args.corpus}/test.tsv, got only {sorted(splits)}")
    sentences = splits["test"]
    documents, source = gold_documents(args, sentences)
    options = PredictionOptions(num_workers=args.num_workers)
    with tempfile.TemporaryDirectory() as work_dir:
        result = compare_text_and_conll(args.model, documents, sentences, args.head, work_dir, options=options)
    print(report(result, source))
    if args.output_dir is not None:
        boundaries = result["boundaries"]
        for key in ("missed_at", "added_at"):
            boundaries[key] = [{"document": name, "offset": offset, "text": _context(documents, name, offset)}
                               for name, offset in boundaries[key]]
        args.output_dir.mkdir(parents=True, exist_ok=True)
        (args.output_dir / "text_vs_conll.json").write_text(
            json.dumps({"source": source, **result}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0 if result["within_limit"] else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command; a user error prints one `error: ...` line and returns 2."""
    return run_cli(lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
