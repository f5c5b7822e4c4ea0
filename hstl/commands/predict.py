"""`hstl-predict` (and `predict.py`): tag CoNLL, plain-text or PubTator files with a trained HSTL model.

    hstl-predict --model runs/demo --input test.tsv --output test.pred.tsv
    python predict.py --model runs/demo --input test.tsv --output test.pred.tsv
    python predict.py --model runs/demo --input abstracts.txt --output abstracts.jsonl --tasks BC5CDR-chem BC2GM
    python predict.py --model runs/demo --input docs.pubtator --output docs.pred.pubtator --merge none
    python predict.py --model runs/demo --input abstracts.txt --output abstracts.jsonl --entity_types Chemical Disease
    python predict.py --model runs/demo --input big.txt --output big.jsonl --resume   # after an interruption
    python predict.py --model user/hstl-bioner --revision v1.0 --input abstracts.txt --output abstracts.jsonl
    python predict.py --model runs/demo --input hstl/sample_data/abstract.txt --output abstract.jsonl --show

CoNLL in gives CoNLL out (one label per input token; one column per head with --merge none); text in gives JSON Lines
(one sentence per line, entities with character offsets into the input and confidences); PubTator in gives PubTator
with predicted annotation lines in place of the input's (BioC likewise); `--show` also prints a text input's mentions
as a table. Inputs are streamed in chunks, so file size is not limited by memory. Formats are described in
`hstl/formats/`, the merge policies and the confidence in `hstl/inference/merging.py` and resuming in
`hstl/inference/streaming.py`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..cli import run_cli
from ..errors import PredictionInputError
from ..formats import INPUT_FORMATS, detect_format
from ..inference.loading import DTYPES, QUANTIZATIONS
from ..inference.feed import DEFAULT_BATCH_TOKENS
from ..inference.merging import MERGE_POLICIES
from ..inference.outputs import is_stream


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hstl-predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True,
                        help="Model folder saved by train.py or finetune.py (with its tokenizer), or a Hub id "
                             "(user/name), fetched through the Hugging Face cache (offline: HF_HUB_OFFLINE=1).")
    parser.add_argument("--revision", default=None,
                        help="With a Hub id: the branch, tag or commit to use (default: main); the commit is "
                             "recorded in the --resume signature.")
    parser.add_argument("--input", required=True, help="File to tag: .tsv/.conll/.iob (CoNLL), .txt (text), "
                        ".pubtator/.pubtator.txt (PubTator), .xml/.json (BioC; detected by content too), or any "
                        "name with --format; - reads standard input (give --format, unless it is BioC); or a "
                        "folder: each of its files is detected and tagged separately.")
    parser.add_argument("--output", required=True,
                        help="Where the predictions go (written as OUTPUT.partial until done, locked by OUTPUT.lock "
                             "meanwhile); - writes standard output, and a FIFO or a character device is written as "
                             "the predictions come (neither can be resumed); for a folder --input, a folder "
                             "receiving NAME.jsonl (text), NAME.pred.tsv (CoNLL), NAME.pred.pubtator, "
                             "NAME.pred.xml, NAME.pred.json for each input file NAME.")
    parser.add_argument("--tasks", nargs="+", default=None,
                        help="Heads to tag with, in priority order for ties of --merge (default: all of the model's).")
    parser.add_argument("--entity_types", nargs="+", default=None,
                        help="Keep only mentions of these shared entity types (e.g. Chemical Disease; the model's "
                             "config.json entity_types maps each head's label types to them); only heads that "
                             "produce one of them run (among --tasks when given).")
    parser.add_argument("--format", choices=INPUT_FORMATS, default=None,
                        help="Input format (default: from the --input file name).")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="At most this many windows per batch (default: as many as --batch_tokens allows).")
    parser.add_argument("--batch_tokens", type=int, default=DEFAULT_BATCH_TOKENS,
                        help="Padded sub-tokens per batch: windows are sorted by length and batched up to this many "
                             "(--batch_size, when given, also caps the windows of a batch). The output does not "
                             "depend on it.")
    parser.add_argument("--num_workers", type=int, default=None,
                        help="Worker processes (default: the machine's cores, shared among the processes of "
                             "`accelerate launch`; 0: none, this process does everything). On the CPU each worker "
                             "tags whole pieces of the input (read, split, tokenize, window, model, CRFs, render) and "
                             "this process writes them in order; on a GPU the workers read, split, tokenize and window "
                             "ahead of the model, which runs in this process. The output does not depend on it.")
    parser.add_argument("--max_length", type=int, default=None,
                        help="Sub-tokens per window, special tokens included; longer sentences are windowed "
                             "(default: what the model was trained with, else 128).")
    parser.add_argument("--overlap", type=int, default=None,
                        help="Sub-tokens of context shared by the windows of a long sentence, below half of "
                             "--max_length (default: what the model was trained with, else 16).")
    parser.add_argument("--merge", choices=MERGE_POLICIES, default="confidence",
                        help="Several heads: 'confidence' keeps the most confident of overlapping mentions (the "
                             "smallest CRF marginal over its words; ties: the longer, then the head listed first); "
                             "'longest' keeps the longest (ties: the head listed first); both give one label column. "
                             "'none' gives one column per head (CoNLL) or every head's mentions (text, PubTator, "
                             "BioC).")
    parser.add_argument("--resume", action="store_true",
                        help="Continue an interrupted run from OUTPUT.partial and OUTPUT.progress.json.")
    parser.add_argument("--chunk_size", type=int, default=1000,
                        help="Sentences (PubTator: documents) read, tagged and written at a time.")
    parser.add_argument("--cpu", action="store_true", help="Run on the CPU even when a GPU is present.")
    parser.add_argument("--dtype", choices=DTYPES, default="fp32",
                        help="Precision of the forward pass (autocast): bf16 (GPU, or CPU), fp16 (GPU only).")
    parser.add_argument("--quantize", choices=QUANTIZATIONS, default=None,
                        help="int8: dynamic int8 quantization of the Linear layers, on the CPU (faster, see "
                             "docs/benchmarks.md for its F1 cost).")
    parser.add_argument("--show", action="store_true",
                        help="After tagging a text file, also print its mentions as a table on stdout: document, "
                             "character offsets, entity type, label type, head, score (when the output has them) "
                             "and text.")
    parser.add_argument("--stop_after_chunks", type=int, default=None, help=argparse.SUPPRESS)  # tests: simulate a kill
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.show:
        check_show_input(Path(args.input), args.format)
        if is_stream(args.output):
            raise PredictionInputError(f"--show: expected an output file to read the mentions back from, got the "
                                       f"stream {args.output}")
    from ..hub import resolve_model
    from ..inference.streaming import PredictionOptions, predict_path

    model_dir = resolve_model(args.model, args.revision)

    options = PredictionOptions(
        tasks=args.tasks, entity_types=args.entity_types, input_format=args.format, merge=args.merge,
        batch_size=args.batch_size, max_length=args.max_length, overlap=args.overlap, chunk_size=args.chunk_size,
        batch_tokens=args.batch_tokens, num_workers=args.num_workers, resume=args.resume, cpu=args.cpu, dtype=args.dtype, quantize=args.quantize,
        stop_after_chunks=args.stop_after_chunks,
    )
    summaries = predict_path(model_dir, args.input, args.output, options)
    from accelerate import PartialState

    if not PartialState().is_main_process:  # under `accelerate launch`, one process reports
        return 0
    report = sys.stderr if is_stream(args.output) else sys.stdout  # a stream (standard output?) holds the predictions
    for summary in summaries:
        if summary.complete:
            print(f"Tagged {summary.total_units} {summary.input_format} unit(s) with {summary.tasks}: "
                  f"{summary.output_path}", file=report)
            if args.show:
                print(mention_table(summary.output_path))
        else:
            print(f"Stopped after {summary.units_done} of {summary.total_units} unit(s) of {summary.output_path}; "
                  f"continue with --resume", file=report)
    return 0


def check_show_input(input_path: Path, input_format: str | None) -> None:
    """`--show` prints the mentions of a JSON Lines output, which only a text input gives: refuse any other input
    before tagging (a missing file is left to the usual error)."""
    if input_path.is_dir():
        raise PredictionInputError(f"--show: expected a text file as --input, got the folder {input_path}")
    if input_path.is_file():
        found = detect_format(input_path, input_format)
        if found != "text":
            raise PredictionInputError(f"--show: expected a text input (its JSON Lines mentions are printed), got "
                                       f"{found} input {input_path}")


SHOWN_COLUMNS = (("document", "document"), ("start", "start"), ("end", "end"), ("type", "type"),
                 ("label_type", "label type"), ("task", "head"), ("score", "score"), ("text", "text"))
"""(JSONL field, column title) of `mention_table`, in order; `label_type` and `score` appear when the records have
them."""
_OPTIONAL_COLUMNS = ("label_type", "score")


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value).replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")  # one line per mention


def mention_table(jsonl_path: Path) -> str:
    """The mentions of a text input's JSON Lines output (`hstl.formats.text`) as an aligned table, one row per
    mention in file order: document, character offsets (end exclusive), entity type, head, text, and the head's own
    label type and the score when the records carry them; then a count line."""
    rows, sentences = [], 0
    with open(jsonl_path, encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            sentences += 1
            rows.extend({**entity, "document": record["document"]} for entity in record["entities"])
    columns = [(key, title) for key, title in SHOWN_COLUMNS
               if key not in _OPTIONAL_COLUMNS or any(key in row for row in rows)]
    table = [[title for _, title in columns]] + [[_cell(row.get(key, "")) for key, _ in columns] for row in rows]
    widths = [max(len(cells[index]) for cells in table) for index in range(len(columns))]
    numeric = [key in ("start", "end", "score") for key, _ in columns]
    lines_out = ["  ".join(cell.rjust(width) if right else cell.ljust(width)
                           for cell, width, right in zip(cells, widths, numeric)).rstrip() for cells in table]
    lines_out.append(f"{len(rows)} mention(s) in {sentences} sentence(s) of {jsonl_path}")
    return "\n".join(lines_out)


def main(argv: list[str] | None = None) -> int:
    """Runs the command; a user error prints one `error: ...` line and returns 2."""
    return run_cli(lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
