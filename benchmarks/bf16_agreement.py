"""How far `predict.py --dtype bf16` agrees with fp32 on a trained model: the mentions each finds on the test splits of
real corpora, and each one's F1 against the gold mentions.

    python benchmarks/bf16_agreement.py --model runs/compare-full/runs/stage1/seed1 --max_sentences 500 [--cpu]

For each corpus the first `--max_sentences` sentences of `<data_root>/<corpus>/test.tsv` are written without their
labels and tagged by `predict_file` (predict.py's whole path, CoNLL in and out, merge "none") with the corpus's head
(the head named like the corpus, or `--task_map CORPUS=HEAD`), once in fp32 and once under bf16 autocast; on the CPU
unless a GPU is there and `--cpu` is not given. Mentions are compared as (sentence, start, end) word spans, the
corpora's own chunk rules (`labels_hstl.extract_chunks`); gold F1 is over the same spans, types ignored (each of these
corpora has one type).

Prints one `#` line per corpus (mentions in fp32 and bf16, in both, F1 of each against gold, seconds of each: each
`predict_file` call loads the model, and the two precisions take turns going first), then, over all corpora,
`RATIO bf16_vs_fp32 <fp32 seconds / bf16 seconds>` and `RATIO bf16_mention_agreement <mentions in both / mentions in
either>` (1.0: the same mentions).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

TARGETS = ("BC5CDR-chem", "BC5CDR-disease", "NCBI-disease", "BC2GM", "linnaeus")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _common.add_common_arguments(parser)
    parser.add_argument("--model", required=True, type=Path, help="Trained model folder (train.py or finetune.py).")
    parser.add_argument("--data_root", type=Path, default=None,
                        help="Folder of <corpus>/test.tsv (default: HSTL_BIONER_DIR, else ../shared/data/bioner, "
                             "else the shipped sample).")
    parser.add_argument("--corpora", nargs="+", default=list(TARGETS), help="Corpora to tag (default: the 5 targets).")
    parser.add_argument("--task_map", nargs="*", default=[], metavar="CORPUS=HEAD",
                        help="Tag CORPUS with HEAD instead of the head named like it.")
    parser.add_argument("--max_sentences", type=int, default=500, help="Test sentences per corpus (from the start).")
    parser.add_argument("--cpu", action="store_true", help="Tag on the CPU even when a GPU is there.")
    return parser.parse_args(argv)


def spans(sentences) -> set[tuple[int, int, int]]:
    """(sentence, first word, end word (exclusive)) of every mention of labelled sentences (`hstl.data.Sentence`, as
    `read_conll` reads a one-label-column CoNLL file)."""
    from labels_hstl import extract_chunks

    return {(index, start, end) for index, sentence in enumerate(sentences)
            for _, start, end in extract_chunks(sentence.labels)}


def f1(predicted: set, gold: set) -> float:
    """F1 of predicted spans against gold spans (1.0 when both are empty)."""
    correct = len(predicted & gold)
    return 2 * correct / (len(predicted) + len(gold)) if predicted or gold else 1.0


def tag_in_both_precisions(model: Path, sentences: list, head: str, scratch: Path, cpu: bool, bf16_first: bool
                           ) -> tuple[dict[str, set], dict[str, float]]:
    """`({dtype: mention spans}, {dtype: seconds})` of `predict_file` on `sentences` (written without labels) with
    `head`, in fp32 and bf16."""
    from hstl.data import Sentence, read_conll, write_conll
    from hstl.inference.streaming import PredictionOptions, predict_file

    unlabelled = scratch / "unlabelled.tsv"
    with unlabelled.open("w", encoding="utf-8") as stream:
        write_conll(stream, [Sentence(sentence.tokens, ["O"] * len(sentence.tokens), sentence.line)
                             for sentence in sentences])
    found, seconds = {}, {}
    for dtype in ("bf16", "fp32") if bf16_first else ("fp32", "bf16"):
        output = scratch / f"{dtype}.tsv"
        started = time.perf_counter()
        predict_file(model, unlabelled, output, PredictionOptions(tasks=[head], merge="none", dtype=dtype, cpu=cpu,
                                                                  show_progress=False))
        seconds[dtype] = time.perf_counter() - started
        found[dtype] = spans(read_conll(output))
    return found, seconds


def main() -> None:
    args = parse_args()
    if args.quick:
        args.max_sentences, args.corpora = 20, args.corpora[:2]
    _common.setup_run(args)
    from hstl.data import read_conll

    data_root = args.data_root or _common.corpora_dir()
    heads = dict(pair.split("=", 1) for pair in args.task_map)
    in_both = in_either = 0
    total_seconds = {"fp32": 0.0, "bf16": 0.0}
    for corpus_index, corpus in enumerate(args.corpora):
        sentences = [sentence for sentence in read_conll(data_root / corpus / "test.tsv")
                     if sentence.tokens][: args.max_sentences]
        gold = spans(sentences)
        with tempfile.TemporaryDirectory(prefix="hstl-bf16-") as scratch:
            found, seconds = tag_in_both_precisions(args.model, sentences, heads.get(corpus, corpus), Path(scratch),
                                                    args.cpu, bf16_first=corpus_index % 2 == 1)  # first in turn
        both, either = found["fp32"] & found["bf16"], found["fp32"] | found["bf16"]
        in_both, in_either = in_both + len(both), in_either + len(either)
        for dtype in total_seconds:
            total_seconds[dtype] += seconds[dtype]
        print(f"# {corpus}: {len(sentences)} sentences; mentions fp32 {len(found['fp32'])}, bf16 {len(found['bf16'])}, "
              f"in both {len(both)}; gold F1 fp32 {100 * f1(found['fp32'], gold):.2f}, "
              f"bf16 {100 * f1(found['bf16'], gold):.2f}; {seconds['fp32']:.1f} s fp32, {seconds['bf16']:.1f} s bf16")
    _common.print_ratio("bf16_vs_fp32", total_seconds["fp32"] / total_seconds["bf16"])
    _common.print_ratio("bf16_mention_agreement", in_both / in_either if in_either else 1.0)


if __name__ == "__main__":
    main()
