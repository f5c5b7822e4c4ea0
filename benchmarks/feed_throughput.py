"""The tagging feed: `predict.py`'s whole file path with the encoder replaced by a stub that returns a trained model's
emissions, so that what is measured is everything but the encoder, at a realistic density of mentions.

    python benchmarks/feed_throughput.py                       # trains a tiny 5-head model on the sample first
    python benchmarks/feed_throughput.py --model runs/demo     # emissions of a trained 5-head model folder
    python benchmarks/feed_throughput.py --quick               # smoke test
    python benchmarks/feed_throughput.py --profile 25          # also each stage's CPU time and profile

Input: every test sentence of the five targets (BC5CDR-chem, BC5CDR-disease, NCBI-disease, BC2GM, linnaeus; the real
corpora when present, else the shipped sample) written as plain text, ten sentences a paragraph. The model (by
default a 2-layer, 64-wide BERT with MiniLM's vocabulary trained `--train_steps` steps on the shipped sample by
train.py) tags the input once, untimed, and its emissions are recorded per window; the stub then returns them for
each window, and the heads' own CRFs decode them (Viterbi and marginals, batched, as `HSTLModel.tag` does). Each
variant is `predict_file` end to end: count pass, workers reading, splitting, tokenizing and batching, the stub and
CRFs, the writer thread stitching, merging and writing JSON Lines. Rounds interleave the variants.

    workers_1, workers_2   `--num_workers` 1 and 2

    RATIO feed_per_core_vs_10k     sentences per CPU-second of workers_2 (this process and its workers, from
                                   getrusage) over 10,000                              (target >= 1.0)
    RATIO feed_scaling_2_workers   time(workers_1) / time(workers_2)                   (target >= 1.7)
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import _common
from gpu_pass import FAMILIES, TARGETS, write_paragraphs



def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _common.add_common_arguments(parser)
    parser.add_argument("--model", default=None, help="A trained 5-head HSTL model folder whose emissions the stub "
                        "returns (default: train a tiny one on the shipped sample).")
    parser.add_argument("--train_steps", type=int, default=400, help="Training steps of the default tiny model.")
    parser.add_argument("--num_sentences", type=int, default=None, help="Test sentences used (default: all).")
    parser.add_argument("--batch_tokens", type=int, default=None, help="predict.py --batch_tokens (default: its).")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="Also run the feed's stages one after the other, each under cProfile, and print each "
                        "one's CPU time a sentence and its N top entries by own time.")
    return parser.parse_args()


def test_sentences(num_sentences: int | None) -> list[str]:
    from hstl.data import read_conll

    sentences = []
    for corpus in TARGETS:
        path = _common.corpora_dir() / corpus / "test.tsv"
        sentences += [" ".join(sentence.tokens) for sentence in read_conll(path) if sentence.tokens != ["-DOCSTART-"]]
    return sentences[:num_sentences]


def tiny_bert_encoder(folder: Path, hidden_size: int = 64, num_layers: int = 2) -> Path:
    """A randomly initialised BERT encoder of the given size with MiniLM's tokenizer (uncased, 30,522 pieces)."""
    from transformers import BertConfig, BertModel

    tokenizer = _common.load_tokenizer()
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
                         num_attention_heads=max(1, hidden_size // 32),
                         intermediate_size=4 * hidden_size)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def train_tiny_model(scratch: Path, steps: int) -> Path:
    """train.py on the shipped sample of the five targets, with a tiny BERT: its emissions find mentions about as
    often as a real model's do."""
    encoder = tiny_bert_encoder(scratch / "encoder")
    tasks = "".join(f"  - {{name: {name}, family: {FAMILIES[name]}, data_dir: \"sample:{name}\"}}\n"
                    for name in TARGETS)
    config = scratch / "tiny.yaml"
    config.write_text(
        f"model: {{encoder: {encoder}, use_family_layers: true, hidden_dropout: 0.1}}\ntasks:\n{tasks}"
        f"training: {{seed: 42, train_batch_size: 16, eval_batch_size: 64, max_steps: {steps}, "
        f"encoder_learning_rate: 1.0e-3, head_learning_rate: 3.0e-3, warmup_ratio: 0.05, max_length: 128, "
        f"window_overlap: 16, eval_steps: {steps}, checkpointing_steps: 0, logging_steps: 100, "
        f"group_by_length: true}}\n", encoding="utf-8")
    started = time.perf_counter()
    subprocess.run([sys.executable, str(_common.REPO_ROOT / "train.py"), "--config", str(config), "--output_dir",
                    str(scratch / "model"), "--cpu"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    print(f"# trained the tiny model ({steps} steps) in {time.perf_counter() - started:.0f} s")
    return scratch / "model"


class RecordedEmissions(torch.nn.Module):
    """Stands in for the model in `predict_file`: `tag` returns, for each window, the emissions the trained model gave
    it, decoded by the model's own CRFs; with `record=True` the model itself tags, and its emissions are kept (the
    benchmark checks that the stub's output equals the model's, byte for byte)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model, self.config = model, model.config
        self.emissions: dict[bytes, dict[str, torch.Tensor]] = {}
        self.record = True

    def tag(self, input_ids, word_start_positions, attention_mask=None, token_type_ids=None, tasks=None,
            return_marginals=False, decode=True, **unused):
        from modeling_hstl import HSTLMultiTaskTaggingOutput

        keys = [row.numpy().tobytes() for row in input_ids]
        if self.record:  # the model itself tags; its emissions are kept
            output = self.model.tag(input_ids, word_start_positions, attention_mask, token_type_ids, tasks=tasks,
                                    return_marginals=return_marginals, decode=decode)
            for row, key in enumerate(keys):
                self.emissions[key] = {name: values[row] for name, values in output.emissions.items()}
            return output
        names = list(tasks)
        emissions = {name: torch.stack([self.emissions[key][name] for key in keys]) for name in names}
        word_mask = word_start_positions >= 0
        predictions, marginals = self.decode(emissions, word_mask, return_marginals) if decode else (None, None)
        return HSTLMultiTaskTaggingOutput(emissions=emissions, predictions=predictions, word_mask=word_mask,
                                          marginals=marginals)

    def decode(self, emissions, word_mask, return_marginals=False):
        """The model's own CRFs (`HSTLModel.decode`)."""
        return self.model.decode(emissions, word_mask, return_marginals)

    def marginals(self, emissions, word_masks):
        """The model's own CRFs' marginals (`HSTLModel.marginals`)."""
        return self.model.marginals(emissions, word_masks)


def cpu_seconds() -> float:
    """CPU seconds used so far by this process and its finished children (the feed's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def file_path(folder: Path, stub: RecordedEmissions, text: Path, output: Path, num_workers: int,
              batch_tokens: int | None, cpu_used: list[float]):
    """One run of `predict_file` on `text` with the stub, adding its CPU seconds to `cpu_used`."""
    from hstl.inference.streaming import LoadedModel, PredictionOptions, predict_file

    options = {"num_workers": num_workers, "show_progress": False, **({"batch_tokens": batch_tokens}
                                                                         if batch_tokens else {})}

    def run() -> None:
        before = cpu_seconds()
        summary = predict_file(folder, text, output, PredictionOptions(cpu=True, **options), LoadedModel(stub))
        cpu_used.append(cpu_seconds() - before)
        assert summary.complete

    return run


def profile_stages(folder: Path, stub: RecordedEmissions, text: Path, num_sentences: int, batch_tokens: int | None,
                   top: int) -> None:
    """The feed's three stages run one after the other in this thread, first plain and then each under its own
    cProfile: microseconds per sentence of each, both ways, and each one's `top` entries by own time."""
    from hstl.formats import FORMATS
    from hstl.inference.feed import FeedSettings, Renderer, read_and_prepare, tag_piece
    from hstl.inference.loading import load_tokenizer_of, window_settings
    from hstl.inference.sharding import piece_ranges, whole_file

    feed = FeedSettings(**({"batch_tokens": batch_tokens} if batch_tokens else {}))  # the pieces of `predict_file`
    tokenizer, window = load_tokenizer_of(folder), window_settings(folder, config=stub.config)
    tasks = stub.config.task_names
    render = Renderer(stub.config, FORMATS["text"], tasks, "confidence", stub.config.entity_types)
    stages = {"read, split, tokenize, window, batch (workers)": cProfile.Profile(),
              "stub emissions, Viterbi and marginals (device)": cProfile.Profile(),
              "stitch, merge, render (writer)": cProfile.Profile()}
    (prepare, device, writer) = stages
    gc.freeze()  # as in the workers, forked under gc.freeze (hstl.inference.feed.in_workers)
    seconds = {}
    for profiled in (False, True):
        seconds[profiled] = dict.fromkeys(stages, 0.0)

        def timed(stage: str, function, *args):
            started = time.process_time()
            result = stages[stage].runcall(function, *args) if profiled else function(*args)
            seconds[profiled][stage] += time.process_time() - started
            return result

        for piece in piece_ranges(whole_file(text), "text", feed.piece_bytes):
            prepared = timed(prepare, read_and_prepare, (piece, 0), "text", tokenizer, window, feed)
            timed(writer, render, timed(device, tag_piece, stub, prepared, tasks, torch.device("cpu"), "fp32"))
    for name, profiler in stages.items():
        plain, with_profiler = (1e6 * seconds[profiled][name] / num_sentences for profiled in (False, True))
        print(f"# stage {name}: {plain:.0f} us a sentence ({with_profiler:.0f} with cProfile's overhead)")
        report = io.StringIO()
        pstats.Stats(profiler, stream=report).strip_dirs().sort_stats("tottime").print_stats(top)
        print("\n".join(f"#   {line}" for line in report.getvalue().splitlines()
                        if line.strip() and not line.lstrip().startswith(("Ordered", "List reduced"))))


def main() -> None:
    args = parse_args()
    _common.setup_run(args)
    from hstl.inference.loading import load_model_and_tokenizer

    scratch = Path(tempfile.mkdtemp(prefix="hstl-feed-"))
    sentences = test_sentences(40 if args.quick else args.num_sentences)
    text = scratch / "test-sentences.txt"
    write_paragraphs(sentences, text)
    folder = Path(args.model) if args.model else train_tiny_model(scratch, 4 if args.quick else args.train_steps)
    stub = RecordedEmissions(load_model_and_tokenizer(folder)[0])
    cpu_used: dict[str, list[float]] = {"workers_1": [], "workers_2": []}
    with torch.inference_mode():
        file_path(folder, stub, text, scratch / "recorded.jsonl", 0, args.batch_tokens, [])()
        stub.record = False
        mentions = sum(line.count('"start"') - 1 for line in (scratch / "recorded.jsonl").open(encoding="utf-8"))
        print(f"# {len(sentences)} test sentences of {', '.join(TARGETS)} as text, model {folder}: {mentions} "
              f"mentions ({mentions / len(sentences):.2f} a sentence)")
        variants = {name: [file_path(folder, stub, text, scratch / f"{name}.jsonl", int(name[-1]), args.batch_tokens,
                                     cpu_used[name])] for name in cpu_used}
        rounds = args.rounds or (1 if args.quick else 3)
        seconds = _common.time_interleaved(variants, rounds, warmup_rounds=0 if args.quick else 1)
    assert (scratch / "workers_1.jsonl").read_bytes() == (scratch / "recorded.jsonl").read_bytes()
    for name, value in seconds.items():
        cpu = sorted(cpu_used[name])[len(cpu_used[name]) // 2]
        print(f"# {name}: {value:.2f} s, {len(sentences) / value:.0f} sentences/s, {cpu:.2f} CPU s "
              f"({len(sentences) / cpu:.0f} sentences per CPU-second)")
    cpu = sorted(cpu_used["workers_2"])[len(cpu_used["workers_2"]) // 2]
    _common.print_ratio("feed_per_core_vs_10k", len(sentences) / cpu / 10_000)
    _common.print_ratio("feed_scaling_2_workers", seconds["workers_1"] / seconds["workers_2"])
    if args.profile:
        with torch.inference_mode():
            profile_stages(folder, stub, text, len(sentences), args.batch_tokens, args.profile)


if __name__ == "__main__":
    main()
