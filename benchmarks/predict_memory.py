#!/usr/bin/env python
"""Peak memory of streaming prediction on a small and a 10x larger input: it should stay flat.

    python benchmarks/predict_memory.py                      # 10 MB and 100 MB of text (minutes on 2 CPU cores)
    python benchmarks/predict_memory.py --small_mb 1 --large_mb 10

Builds plain-text inputs by repeating the shipped sample's sentences, a tiny random XLNet model folder with a tokenizer
trained on the sample (the model's size does not matter here: the question is whether memory grows with the input),
then runs `predict.py` on each input in a fresh process and reads its peak resident set size. Prints both peaks and,
last, `RATIO predict_memory_large_vs_small <peak large / peak small>`: 1.0 means flat.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
FLAT_MEMORY_BOUND = 1.05


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small_mb", type=float, default=10.0, help="Size of the small input in MB.")
    parser.add_argument("--large_mb", type=float, default=100.0, help="Size of the large input in MB.")
    parser.add_argument("--chunk_size", type=int, default=1000, help="predict.py --chunk_size (sentences per chunk).")
    parser.add_argument("--workdir", default=None, help="Where inputs and outputs go (default: a temporary folder).")
    return parser.parse_args()


def write_text(path: Path, megabytes: float, paragraph: str) -> None:
    """Paragraphs of real sentences until the file holds `megabytes` MB."""
    target = int(megabytes * 1_000_000)
    block = (paragraph + "\n\n").encode("utf-8")
    with open(path, "wb") as handle:
        written = 0
        while written < target:
            handle.write(block)
            written += len(block)


def build_model(folder: Path) -> None:
    """A tiny random HSTL model with a tokenizer trained on the sample: enough to run the whole prediction path."""
    from hstl import HSTLConfig, HSTLModel
    from hstl.data import label_list_from, read_split_dir, sample_data_dir
    from hstl.tokenization import train_xlnet_tokenizer

    corpora = ["BC5CDR-chem", "NCBI-disease"]
    splits = {name: read_split_dir(sample_data_dir() / name) for name in corpora}
    tokenizer = train_xlnet_tokenizer([s.tokens for split in splits.values() for s in split["train"]], folder,
                                      vocab_size=2000, seed=0)
    tasks = [{"name": name, "labels": label_list_from(splits[name]["train"]), "family": family}
             for name, family in zip(corpora, ["chemical", "disease"])]
    encoder = {"model_type": "xlnet", "vocab_size": len(tokenizer), "d_model": 32, "n_layer": 1, "n_head": 2,
               "d_inner": 64, "pad_token_id": tokenizer.pad_token_id}
    HSTLModel(HSTLConfig(encoder_config=encoder, tasks=tasks)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def peak_rss_of_prediction(model: Path, text: Path, output: Path, chunk_size: int) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of one predict.py run in a fresh process."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, str(REPO / "predict.py"), "--model", str(model), "--input", str(text), "--output",
         str(output), "--chunk_size", str(chunk_size), "--cpu"],
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"},
    )
    # wait4 returns the resource usage of this one child, so each input's peak is its own (RUSAGE_CHILDREN would give
    # the running maximum over every child so far).
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"predict.py failed on {text} with exit code {process.returncode}")
    return usage.ru_maxrss / 1024, time.perf_counter() - started


def main() -> None:
    args = parse_args()
    from hstl.data import read_split_dir, sample_data_dir

    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(args.workdir or scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        build_model(workdir / "model")
        sentences = [" ".join(s.tokens) for s in read_split_dir(sample_data_dir() / "BC5CDR-chem")["train"][:50]]
        paragraph = " ".join(sentences)
        results = {}
        for name, megabytes in (("small", args.small_mb), ("large", args.large_mb)):
            text = workdir / f"{name}.txt"
            write_text(text, megabytes, paragraph)
            peak, seconds = peak_rss_of_prediction(workdir / "model", text, workdir / f"{name}.jsonl", args.chunk_size)
            results[name] = peak
            print(f"{name}: {text.stat().st_size / 1e6:.1f} MB of text, peak RSS {peak:.1f} MB, {seconds:.0f} s")
    print(f"# target: peak(large) / peak(small) <= {FLAT_MEMORY_BOUND} (flat within {FLAT_MEMORY_BOUND - 1:.0%})")
    print(f"RATIO predict_memory_large_vs_small {results['large'] / results['small']:.3f}")


if __name__ == "__main__":
    main()
