"""Whole-file tagging (`predict.py`'s path) against the encoder alone, transformers' pipeline, and itself in int8.

    python benchmarks/predict_file_throughput.py --model runs/bench-minilm     # all ratios + int8 F1 cost
    python benchmarks/predict_file_throughput.py --num_sentences 1000          # untrained 5-head model: speed only
    python benchmarks/predict_file_throughput.py --quick                       # smoke test
    python benchmarks/predict_file_throughput.py --tiny_encoder --threads 1 --variants predict --profile 12
                                                    # what the file path costs outside the encoder, profiled

Input: BC5CDR-chem's test sentences written as plain text (one sentence per paragraph; skipped cleanly when the
corpora are absent). Models are loaded before timing; each variant runs once per round, rounds interleaved:

    encoder       MiniLM sub-word tokenization (is_split_into_words, the model's max_length) and forward, length-sorted
                  batches of 64: the floor
    predict       the whole file path of predict.py with all 5 heads: read, split sentences, tokenize words, window,
                  tag (one encoder pass, 5 CRFs), stitch, merge, write JSON Lines (resumable output, fsync per chunk)
    predict_int8  the same with `--quantize int8` (dynamic int8 Linear layers)
    hf_pipeline   `pipeline("token-classification", aggregation_strategy="simple", batch_size=64)`, one head
                  (a BertForTokenClassification on the same encoder), over the same sentences as strings

    RATIO predict_vs_encoder      time(encoder) / time(predict)          (target >= 0.85)
    RATIO predict_vs_hf_pipeline  time(hf_pipeline) / time(predict)      (target >= 3.0)
    RATIO int8_vs_fp32            time(predict) / time(predict_int8)     (target >= 1.5; F1 cost printed with --model)
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import torch

import _common


VARIANTS = ("encoder", "predict", "predict_int8", "hf_pipeline")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _common.add_common_arguments(parser)
    parser.add_argument("--model", default=None, help="A trained 5-head MiniLM HSTL model folder "
                        "(configs/bench-minilm.yaml); default: an untrained one (speed only, no F1).")
    parser.add_argument("--tiny_encoder", action="store_true", help="Use an untrained 1-layer, 32-wide BERT encoder "
                        "(MiniLM's tokenizer) instead of MiniLM: what the file path costs outside the encoder.")
    parser.add_argument("--num_sentences", type=int, default=None, help="Test sentences used (default: all).")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                        help="The variants timed (default: all); a ratio is printed when both its variants are.")
    parser.add_argument("--num_workers", type=int, default=None,
                        help="predict.py --num_workers of the predict variants (default: its own).")
    parser.add_argument("--batch_tokens", type=int, default=None,
                        help="predict.py --batch_tokens of the predict variants (default: its own).")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="Also run `predict` once under cProfile (after the timing) and print its N top entries "
                        "by cumulative and by own time.")
    return parser.parse_args()


def bc5cdr_chem_test():
    path = _common.corpora_dir() / "BC5CDR-chem" / "test.tsv"
    if not path.is_file():
        print(f"# skipped: {path} is absent (the real corpora are needed)")
        sys.exit(0)
    from hstl.data import read_conll

    return [sentence for sentence in read_conll(path) if sentence.tokens != ["-DOCSTART-"]]


def model_folder(args: argparse.Namespace, scratch: Path) -> Path:
    """The trained model, or an untrained 5-head one (MiniLM, or a tiny encoder) saved with MiniLM's tokenizer."""
    if args.model:
        return Path(args.model)
    from modeling_hstl import HSTLModel

    tasks = [task for task in _common.paper_task_dicts() if task["name"] in
             ("BC5CDR-chem", "BC5CDR-disease", "NCBI-disease", "BC2GM", "linnaeus")]
    if args.tiny_encoder:
        from configuration_hstl import HSTLConfig

        encoder = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                   "intermediate_size": 64, "vocab_size": len(_common.load_tokenizer())}
        model = HSTLModel(HSTLConfig(encoder_config=encoder, tasks=tasks))
    else:
        model = HSTLModel.from_encoder(str(_common.minilm_path()), tasks=tasks)
    model.save_pretrained(scratch / "model")
    _common.load_tokenizer().save_pretrained(scratch / "model")
    return scratch / "model"


def file_path_tagger(folder: Path, quantize: str | None, num_workers: int | None, batch_tokens: int | None):
    """A function tagging a text file into a JSONL file through `predict_file` (count pass, feed workers, writer
    thread, resumable output), with the model loaded (and quantized) once."""
    from accelerate import Accelerator

    from hstl.inference import streaming
    from hstl.inference.feed import FeedSettings
    from hstl.inference.loading import load_model_config, load_tokenizer_of, quantize_linear_layers, window_settings
    from modeling_hstl import HSTLModel

    config = load_model_config(folder)
    model = HSTLModel.from_pretrained(folder, config=config).eval()
    model = Accelerator(cpu=True).prepare_model(quantize_linear_layers(model) if quantize else model,
                                                evaluation_mode=True)
    loaded = streaming.LoadedModel(model)
    options = streaming.PredictionOptions(show_progress=False, cpu=True, merge="longest", num_workers=num_workers,
                                          **({"batch_tokens": batch_tokens} if batch_tokens else {}))

    def tag_file(input_path: Path, output_path: Path) -> None:
        assert streaming.predict_file(folder, input_path, output_path, options, loaded).complete

    tagger = SimpleNamespace(tokenizer=load_tokenizer_of(folder), settings=window_settings(folder, config=config),
                             batching=FeedSettings(options.batch_tokens))
    return tag_file, model, tagger


def encoder_variant(sentences, max_length: int, batch_size: int = 64):
    from transformers import AutoModel

    tokenizer, encoder = _common.load_tokenizer(), AutoModel.from_pretrained(_common.minilm_path()).eval()
    order = sorted(range(len(sentences)), key=lambda index: -len(sentences[index].tokens))

    def run() -> None:
        for first in range(0, len(order), batch_size):
            words = [sentences[index].tokens for index in order[first : first + batch_size]]
            batch = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length, padding=True,
                              return_tensors="pt")
            encoder(**batch)

    return run


def pipeline_variant(texts: list[str]):
    from transformers import AutoModelForTokenClassification, pipeline

    classifier = AutoModelForTokenClassification.from_pretrained(_common.minilm_path(), num_labels=3).eval()
    tagger = pipeline("token-classification", model=classifier, tokenizer=_common.load_tokenizer(),
                      aggregation_strategy="simple", batch_size=64, device="cpu")
    return lambda: tagger(texts)


def chem_f1(model, tagger, sentences) -> float:
    from hstl.evaluation import score_head

    # batched as the predict variants batch (hstl-evaluate's path), so the F1 is that of their labels
    return score_head(model, tagger.tokenizer, sentences, "BC5CDR-chem", tagger.settings,
                      batching=tagger.batching).result()["f1"]


def print_profile(run, top: int) -> None:
    """`run()` under cProfile: its `top` entries by cumulative time, then by own time (what the callee excludes)."""
    profiler = cProfile.Profile()
    profiler.runcall(run)
    for order in ("cumulative", "tottime"):
        report = io.StringIO()
        pstats.Stats(profiler, stream=report).strip_dirs().sort_stats(order).print_stats(top)
        print(f"# profile of predict by {order}:")
        print("\n".join(line for line in report.getvalue().splitlines() if line.strip()))


def print_ratios(args: argparse.Namespace, seconds: dict[str, float], f1_of) -> None:
    if "encoder" in seconds and "predict" in seconds:
        _common.print_ratio("predict_vs_encoder", seconds["encoder"] / seconds["predict"])
    if "hf_pipeline" in seconds and "predict" in seconds:
        _common.print_ratio("predict_vs_hf_pipeline", seconds["hf_pipeline"] / seconds["predict"])
    if not ("predict" in seconds and "predict_int8" in seconds):
        return
    if args.model:
        f1_fp32, f1_int8 = f1_of("fp32"), f1_of("int8")
        print(f"# BC5CDR-chem test F1: fp32 {f1_fp32:.4f}, int8 {f1_int8:.4f} (cost {f1_fp32 - f1_int8:+.4f})")
        print(f"RATIO int8_vs_fp32 {seconds['predict'] / seconds['predict_int8']:.3f} "
              f"(F1 cost {f1_fp32 - f1_int8:.4f})", flush=True)
    else:
        _common.print_ratio("int8_vs_fp32", seconds["predict"] / seconds["predict_int8"])


def main() -> None:
    args = parse_args()
    _common.setup_run(args)
    sentences = bc5cdr_chem_test()[: 64 if args.quick else args.num_sentences]
    texts = [" ".join(sentence.tokens) for sentence in sentences]
    scratch = Path(tempfile.mkdtemp(prefix="hstl-bench-"))
    text_path = scratch / "bc5cdr-chem-test.txt"
    text_path.write_text("\n\n".join(texts) + "\n", encoding="utf-8")
    folder = model_folder(args, scratch)
    taggers = {"fp32": file_path_tagger(folder, None, args.num_workers, args.batch_tokens)}
    if "predict_int8" in args.variants:
        taggers["int8"] = file_path_tagger(folder, "int8", args.num_workers, args.batch_tokens)
    factories = {
        "encoder": lambda: encoder_variant(sentences, taggers["fp32"][2].settings.max_length),
        "predict": lambda: lambda: taggers["fp32"][0](text_path, scratch / "fp32.jsonl"),
        "predict_int8": lambda: lambda: taggers["int8"][0](text_path, scratch / "int8.jsonl"),
        "hf_pipeline": lambda: pipeline_variant(texts),
    }
    variants = {name: [factories[name]()] for name in VARIANTS if name in args.variants}
    rounds = args.rounds or (1 if args.quick else 2)
    print(f"# {len(sentences)} BC5CDR-chem test sentences as text, model {folder}, {rounds} rounds")
    with torch.inference_mode():
        seconds = _common.time_interleaved(variants, rounds, warmup_rounds=0 if args.quick else 1)
    for name, value in seconds.items():
        print(f"# {name}: {value:.2f} s, {len(sentences) / value:.1f} sentences/s")
    print_ratios(args, seconds, lambda precision: chem_f1(*taggers[precision][1:], sentences))
    if args.profile:
        with torch.inference_mode():
            print_profile(lambda: taggers["fp32"][0](text_path, scratch / "profiled.jsonl"), args.profile)


if __name__ == "__main__":
    main()
