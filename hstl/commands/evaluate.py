"""`hstl-evaluate` (and `python -m eval.evaluate_model`): evaluate a model folder's heads on chosen corpora and splits:
scores, a markdown table, an F1 chart and error files.

    hstl-evaluate --model runs/demo --data_root hstl/sample_data --corpora BC5CDR-chem NCBI-disease \
        --splits validation test --output_dir runs/demo/evaluation
    hstl-evaluate --model runs/demo --config configs/demo.yaml --output_dir runs/demo/evaluation
    hstl-evaluate --model user/hstl-bioner --revision v1.0 --config configs/demo.yaml --output_dir runs/hub-eval
    hstl-evaluate --model runs/demo --data_root ../shared/data/bioner --corpora BC5CDR-chem --splits test \
        --output_dir runs/demo/int8 --quantize int8      # as predict.py --quantize int8 tags: its F1 cost

Each corpus is tagged by the head of the same name, or by the head `--task_map corpus=head` names (e.g. scoring the
BC5CDR-disease head on NCBI-disease). Writes into OUTPUT_DIR:

    results.json                  {corpus: {split: scores}}, the scores of `hstl.scoring.EntityScorer.result`
    results.md                    the model, then precision / recall / F1 per corpus and split, and mean F1 per split
    model.json                    the model scored: {"model": Hub id, "revision": commit} or {"model": folder path}
    f1.png                        F1 per corpus, one bar per split (needs matplotlib: `pip install 'hstl[plot]'`)
    errors/<corpus>.<split>.jsonl one false positive or false negative per line, with its sentence's text

Each corpus is scored by `hstl.evaluation.score_head`, the code that scores validation and test during training, with
the window settings `hstl.inference.loading.window_settings` decides, as predict.py does.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from ..cli import run_cli
from ..data import Sentence, read_split_dir, split_files
from ..inference.feed import DEFAULT_BATCH_TOKENS
from ..inference.loading import QUANTIZATIONS

logger = logging.getLogger(__name__)

DEFAULT_SPLITS = ("validation", "test")
"""`hstl.corpora.load_task_data` split name -> the corpus file name used here."""

ScoresByCorpus = dict[str, dict[str, dict[str, Any]]]
"""corpus -> split -> scores of `EntityScorer.result`."""


@dataclass
class CorpusToScore:
    """One corpus: the model head that tags it and its sentences per split (`validation`, `test`, `train`)."""

    corpus: str
    head: str
    splits: dict[str, list[Sentence]]
    files: dict[str, Path] | None = None
    """The file of each split, when read from one (`--data_root`): its windows are then batched in the pieces
    `predict.py` cuts the file into."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hstl-evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True,
                        help="Model folder (config.json, model.safetensors, tokenizer), or a Hub id (user/name), "
                             "fetched through the Hugging Face cache (offline: HF_HUB_OFFLINE=1).")
    parser.add_argument("--revision", default=None,
                        help="With a Hub id: the branch, tag or commit to score (default: main); the commit is "
                             "recorded in model.json and results.md.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data_root", type=Path, help="Folder holding <corpus>/{train,devel,test}.tsv.")
    source.add_argument("--config", type=Path,
                        help="Run config (YAML) whose tasks say where each corpus is; corpus name = task name.")
    parser.add_argument("--corpora", nargs="+", default=None,
                        help="Corpora to score (default: every corpus of --data_root or --config that has a head).")
    parser.add_argument("--splits", nargs="+", default=list(DEFAULT_SPLITS), choices=["train", "validation", "test"],
                        help="Splits to score (default: validation test; a corpus folder's devel.tsv is its validation split).")
    parser.add_argument("--task_map", nargs="+", default=[], metavar="CORPUS=HEAD",
                        help="Tag CORPUS with the head HEAD instead of the head named like the corpus.")
    parser.add_argument("--output_dir", required=True, type=Path, help="Where results.json, results.md, f1.png "
                        "and errors/ go (created if needed).")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="At most this many windows per batch (default: as many as --batch_tokens allows), as "
                             "predict.py.")
    parser.add_argument("--batch_tokens", type=int, default=DEFAULT_BATCH_TOKENS,
                        help="Padded sub-tokens per batch, as predict.py: windows are batched as predict.py batches "
                             "them, so that the scores are those of predict.py's labels (also with --quantize int8).")
    parser.add_argument("--max_length", type=int, default=None,
                        help="Sub-tokens per window, special tokens included (default: what the model was trained "
                             "with, else 128), as predict.py.")
    parser.add_argument("--overlap", type=int, default=None,
                        help="Sub-tokens of context shared by the windows of a long sentence (default: what the "
                             "model was trained with, else 16), as predict.py.")
    parser.add_argument("--no_plot", action="store_true", help="Do not draw f1.png (then matplotlib is not needed).")
    parser.add_argument("--cpu", action="store_true", help="Run on the CPU even when a GPU is present.")
    parser.add_argument("--quantize", choices=QUANTIZATIONS, default=None,
                        help="int8: score the model with its Linear layers dynamically quantized, as predict.py "
                             "--quantize int8 tags (CPU only): its F1 cost is the difference with a run without it.")
    return parser


# ---------------------------------------------------------------------------------------------------------------------
# What to score


def parse_task_map(pairs: Sequence[str]) -> dict[str, str]:
    """`["NCBI-disease=BC5CDR-disease"]` -> `{"NCBI-disease": "BC5CDR-disease"}`; raises ValueError naming the flag."""
    task_map = {}
    for pair in pairs:
        corpus, separator, head = pair.partition("=")
        if not separator or not corpus or not head:
            raise ValueError(f"--task_map: expected CORPUS=HEAD, got {pair!r}")
        task_map[corpus] = head
    return task_map


def available_corpora(args: argparse.Namespace, run_config) -> list[str]:
    """Corpus names that `--data_root` (its sub-folders) or `--config` (its task names) offers."""
    if args.config is not None:
        return run_config.task_names()
    if not args.data_root.is_dir():
        raise FileNotFoundError(f"--data_root: expected a folder holding <corpus>/{{train,devel,test}}.tsv, "
                                f"got {str(args.data_root)!r}, which is not a folder")
    return sorted(entry.name for entry in args.data_root.iterdir() if entry.is_dir())


def choose_heads(corpora: Sequence[str] | None, offered: Sequence[str], task_map: dict[str, str],
                 heads: Sequence[str]) -> dict[str, str]:
    """Corpus -> head for the corpora to score. Without `--corpora`: every offered corpus that has a head.

    Raises:
        ValueError: naming the flag, for a corpus that is not offered or a head the model does not have.
    """
    if corpora is None:
        chosen = [corpus for corpus in offered if task_map.get(corpus, corpus) in heads]
        if not chosen:
            raise ValueError(f"--corpora: none of the corpora found ({list(offered)}) is named like a head of the "
                             f"model ({list(heads)}); name them with --corpora and map them with --task_map")
    else:
        chosen = list(dict.fromkeys(corpora))
        unknown = [corpus for corpus in chosen if corpus not in offered]
        if unknown:
            raise ValueError(f"--corpora: expected corpora among {list(offered)}, got {unknown}")
    stray = sorted(set(task_map) - set(chosen))
    if stray:
        raise ValueError(f"--task_map: expected corpora that are scored ({chosen}), got {stray}")
    head_of = {corpus: task_map.get(corpus, corpus) for corpus in chosen}
    missing = {corpus: head for corpus, head in head_of.items() if head not in heads}
    if missing:
        raise ValueError(f"--task_map: expected a head of the model ({list(heads)}) for every corpus, got none for "
                         f"{sorted(missing)}; map them with --task_map CORPUS=HEAD")
    return head_of


def read_corpora(args: argparse.Namespace, run_config, head_of: dict[str, str]) -> list[CorpusToScore]:
    """Reads the requested splits of every chosen corpus; a missing split raises FileNotFoundError naming it."""
    if args.config is not None:
        split_sets, files = _splits_from_run_config(run_config, list(head_of)), {}
    else:
        split_sets = {corpus: read_split_dir(args.data_root / corpus) for corpus in head_of}
        files = {corpus: split_files(args.data_root / corpus) for corpus in head_of}
    to_score = []
    for corpus, head in head_of.items():
        missing = [split for split in args.splits if split not in split_sets[corpus]]
        if missing:
            source = args.config if args.config is not None else args.data_root / corpus
            raise FileNotFoundError(f"{source}: expected the split(s) {missing} of {corpus} for --splits, got only "
                                    f"{sorted(split_sets[corpus])}")
        to_score.append(CorpusToScore(corpus, head, {split: split_sets[corpus][split] for split in args.splits},
                                      files.get(corpus)))
    return to_score


def _splits_from_run_config(run_config, corpora: list[str]) -> dict[str, dict[str, list[Sentence]]]:
    """Reads the chosen tasks' data exactly as training does (data_dir, files or Hugging Face dataset)."""
    from dataclasses import replace

    from ..corpora import load_task_data

    selected = replace(run_config, tasks=[task for task in run_config.tasks if task.name in corpora])
    # Sub-sampling applies to training only; scoring reads whole splits.
    selected.tasks = [replace(task, max_train_sentences=None) for task in selected.tasks]
    return {task.name: dict(task.splits) for task in load_task_data(selected)}


# ---------------------------------------------------------------------------------------------------------------------
# Writing


def write_results_json(results: ScoresByCorpus, path: Path) -> None:
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def results_markdown(results: ScoresByCorpus, head_of: dict[str, str], source: dict[str, str]) -> str:
    """The model (`hstl.hub.model_source`), then a markdown table: one row per corpus and split, then the mean F1
    over corpora of each split."""
    revision = f" at revision `{source['revision']}`" if "revision" in source else ""
    lines = [f"Model: `{source['model']}`{revision}", "",
             "| corpus | head | split | precision | recall | F1 | gold mentions | predicted mentions |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for corpus, by_split in results.items():
        for split, scores in by_split.items():
            lines.append(f"| {corpus} | {head_of[corpus]} | {split} | {scores['precision']:.4f} | "
                         f"{scores['recall']:.4f} | {scores['f1']:.4f} | {scores['num_gold']} | {scores['num_pred']} |")
    splits = list(dict.fromkeys(split for by_split in results.values() for split in by_split))
    for split in splits:
        f1_values = [by_split[split]["f1"] for by_split in results.values() if split in by_split]
        lines.append(f"| mean ({len(f1_values)} corpora) | | {split} | | | {sum(f1_values) / len(f1_values):.4f} | | |")
    return "\n".join(lines) + "\n"


def write_error_files(errors: dict[tuple[str, str], list[dict[str, Any]]], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for (corpus, split), records in errors.items():
        with open(folder / f"{corpus}.{split}.jsonl", "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def plot_f1(results: ScoresByCorpus, path: Path) -> None:
    """Grouped bar chart: F1 per corpus, one bar per split."""
    from ..plotting import grouped_bar_chart

    corpora = list(results)
    splits = list(dict.fromkeys(split for by_split in results.values() for split in by_split))
    f1_by_split = {split: [results[corpus].get(split, {}).get("f1", 0.0) for corpus in corpora] for split in splits}
    grouped_bar_chart(path, corpora, f1_by_split, ylabel="strict entity F1", legend_title="split", value_format="%.2f",
                      ylim=(0, 1.05))


# ---------------------------------------------------------------------------------------------------------------------


def plan(args: argparse.Namespace, model_dir: Path, config):
    """The corpora to score with their data, and the window settings (the model's, as predict.py uses them).

    Raises:
        ValueError: naming the flag, for a bad --corpora, --task_map, --max_length, ... value.
    """
    from ..inference.loading import window_settings
    from ..run_config import load_run_config

    run_config = load_run_config(args.config) if args.config is not None else None
    head_of = choose_heads(args.corpora, available_corpora(args, run_config), parse_task_map(args.task_map),
                           config.task_names)
    settings = window_settings(model_dir, args.max_length, args.overlap, args.batch_size, config=config)
    return read_corpora(args, run_config, head_of), settings


def run(argv: Optional[Sequence[str]] = None) -> int:
    """The command, user errors raised (`main` turns them into one line and exit status 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..hub import resolve_model

    model_dir = resolve_model(args.model, args.revision)
    if not args.no_plot:
        from ..plotting import import_pyplot

        try:  # fail before an evaluation of minutes, not after
            import_pyplot()
        except ImportError as error:
            parser.error(f"f1.png: {error}, or pass --no_plot")
    from accelerate import Accelerator

    from ..evaluation import error_records, score_head
    from ..inference.feed import FeedSettings
    from ..inference.loading import (
        check_speed_options, check_window_settings, load_model_and_tokenizer, load_model_config, quantize_linear_layers,
    )

    try:
        to_score, settings = plan(args, model_dir, load_model_config(model_dir))
    except ValueError as error:
        if type(error) is not ValueError:  # CorpusFormatError, RunConfigError, ...: user errors of their own
            raise
        parser.error(str(error))
    batching = FeedSettings(args.batch_tokens, args.batch_size)
    accelerator = Accelerator(cpu=args.cpu)
    check_speed_options("fp32", args.quantize, accelerator.device.type)
    model, tokenizer = load_model_and_tokenizer(model_dir)
    check_window_settings(tokenizer, settings)
    if args.quantize is not None:
        model = quantize_linear_layers(model)
    model = accelerator.prepare(model)

    results: ScoresByCorpus = {}
    errors: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for corpus in to_score:
        for split, sentences in corpus.splits.items():
            scorer = score_head(model, tokenizer, sentences, corpus.head, settings, accelerator=accelerator,
                                batching=batching, source=corpus.files[split] if corpus.files else None)
            results.setdefault(corpus.corpus, {})[split] = scorer.result()
            errors[corpus.corpus, split] = error_records(scorer, sentences)
    if accelerator.is_main_process:
        write_outputs(args, model_dir, results, errors, {corpus.corpus: corpus.head for corpus in to_score})
    return 0


def write_outputs(args: argparse.Namespace, model_dir: Path, results: ScoresByCorpus, errors,
                  head_of: dict[str, str]) -> None:
    from ..hub import model_source

    output_dir = args.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    source = model_source(model_dir)
    write_results_json(results, output_dir / "results.json")
    (output_dir / "model.json").write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
    table = results_markdown(results, head_of, source)
    (output_dir / "results.md").write_text(table, encoding="utf-8")
    write_error_files(errors, output_dir / "errors")
    if not args.no_plot:
        plot_f1(results, output_dir / "f1.png")
    print(table)
    print(f"Wrote {output_dir.resolve()}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command; a user error prints one `error: ...` line and returns 2."""
    return run_cli(lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
