"""The Python steps of benchmarks/gpu_pass.sh (one GPU pass over the project's own commands), one subcommand each:

    inputs DATA WORK            test sentences of the five targets as text: big.txt (all), small.txt (1,000), tiny.txt
                                (20), ten sentences a paragraph, and sentences.txt (one a line)
    encoder TOKENIZER OUT SCALE a BERT encoder with random weights (SCALE full: BERT-base shape; tiny: 1 layer, 32 wide)
                                and the tokenizer files of TOKENIZER (MiniLM's uncased vocabulary)
    configs DATA WORK SCALE STEPS   bert.yaml (that encoder) and xlnet.yaml (XLNet-base shape from scratch), 5 heads
    anchor WORK STEPS           the yardstick: a plain `BertForTokenClassification` training loop, batch 32, bf16
                                autocast on a GPU; prints its steps/s
    pipelines WORK              transformers' token-classification pipeline (1 head; fp32, and bf16 on a GPU) and
                                HSTL's own pipeline through the standard call (5 heads); writes pipelines.json
    summary WORK OUT STEPS      every figure of the pass, and its RATIO lines, from the stage times and logs

Speed does not depend on the weights, so the encoders are random; the mention agreements it prints are those of
random models (use a trained folder for the bf16 agreement that matters).
"""

from __future__ import annotations

import glob
import json
import os
import random
import re
import shutil
import sys
import time
from pathlib import Path

TARGETS = ("BC5CDR-chem", "BC5CDR-disease", "NCBI-disease", "BC2GM", "linnaeus")
FAMILIES = {"BC5CDR-chem": "chemical", "BC5CDR-disease": "disease", "NCBI-disease": "disease", "BC2GM": "gene/protein",
            "linnaeus": "species"}
SHAPES = {
    "bert": {"full": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
             "tiny": dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)},
    "xlnet": {"full": "d_model: 768, n_layer: 12, n_head: 12, d_inner: 3072",
              "tiny": "d_model: 32, n_layer: 1, n_head: 2, d_inner: 64"},
}


def write_paragraphs(sentences: list[str], path: Path) -> None:
    """Sentences as text, ten a paragraph (an abstract's size)."""
    path.write_text("".join(" ".join(sentences[first:first + 10]) + "\n\n"
                            for first in range(0, len(sentences), 10)), encoding="utf-8")


def inputs(data: str, work: str) -> None:
    repo = Path(__file__).resolve().parents[1]
    files = sorted(glob.glob(f"{repo}/hstl/sample_data/*/test.tsv")) if data == "sample" else \
        [f"{data}/{corpus}/test.tsv" for corpus in TARGETS]
    sentences = []
    for file in files:
        current = []
        for line in open(file, encoding="utf-8"):
            token = line.split("\t")[0].strip()
            if line.strip() and token != "-DOCSTART-":
                current.append(token)
            elif current:
                sentences.append(" ".join(current))
                current = []
        if current:
            sentences.append(" ".join(current))

    write_paragraphs(sentences, Path(work, "big.txt"))
    write_paragraphs(sentences[:1000], Path(work, "small.txt"))
    write_paragraphs(sentences[:20], Path(work, "tiny.txt"))
    Path(f"{work}/sentences.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    print(len(sentences), "sentences,", sum(len(sentence.split()) for sentence in sentences), "words")


def encoder(tokenizer: str, out: str, scale: str) -> None:
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=30522, **SHAPES["bert"][scale])).save_pretrained(out)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if Path(tokenizer, name).is_file():
            shutil.copy(Path(tokenizer, name), out)


def configs(data: str, work: str, scale: str, steps: str) -> None:
    repo = Path(__file__).resolve().parents[1]
    root = repo if data == "sample" else Path(data)
    tasks = "".join(f"  - {{name: {name}, family: {FAMILIES[name]}, data_dir: "
                    f"{f'sample:{name}' if data == 'sample' else name}}}\n" for name in TARGETS)
    training = (f"training: {{seed: 42, train_batch_size: 32, eval_batch_size: 128, max_steps: {steps}, "
                f"encoder_learning_rate: 3.0e-5, head_learning_rate: 1.0e-3, warmup_ratio: 0.05, max_length: 128, "
                f"window_overlap: 16, eval_steps: {steps}, checkpointing_steps: {steps}, keep_checkpoints: 1, "
                f"logging_steps: 50, group_by_length: true}}\n")
    Path(work, "bert.yaml").write_text(
        f"data_root: {root}\nmodel: {{encoder: {work}/enc-bert, use_family_layers: true, hidden_dropout: 0.1}}\n"
        f"tasks:\n{tasks}{training}", encoding="utf-8")
    Path(work, "xlnet.yaml").write_text(
        f"data_root: {root}\nmodel: {{encoder_config: {{model_type: xlnet, {SHAPES['xlnet'][scale]}}}, "
        f"tokenizer: train, tokenizer_vocab_size: 16000, use_family_layers: true, hidden_dropout: 0.1}}\n"
        f"tasks:\n{tasks}{training}", encoding="utf-8")


def anchor(work: str, steps: str) -> None:
    import torch
    from transformers import AutoTokenizer, BertForTokenClassification

    steps = int(steps)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(f"{work}/enc-bert")
    sentences = [line.split() for line in open(f"{work}/sentences.txt", encoding="utf-8").read().split("\n") if line]
    model = BertForTokenClassification.from_pretrained(f"{work}/enc-bert", num_labels=3).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5)
    rng = random.Random(0)

    def batch():
        encoded = tokenizer(rng.sample(sentences, 32), is_split_into_words=True, truncation=True, max_length=128,
                            padding=True, return_tensors="pt")
        encoded["labels"] = torch.randint(0, 3, encoded["input_ids"].shape)
        return {key: value.to(device) for key, value in encoded.items()}

    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = model(**batch()).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()

    for _ in range(10):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    print(f"plain BertForTokenClassification: {steps / (time.perf_counter() - started):.2f} steps/s (batch 32, "
          f"random sentences, bf16 autocast on GPU)")


def pipelines(work: str) -> None:
    import torch
    from transformers import AutoTokenizer, BertForTokenClassification, pipeline

    device = 0 if torch.cuda.is_available() else -1
    sync = torch.cuda.synchronize if device == 0 else (lambda: None)
    sentences = open(f"{work}/sentences.txt", encoding="utf-8").read().split("\n")[:-1][:5000]
    results = {}
    tokenizer = AutoTokenizer.from_pretrained(f"{work}/enc-bert")
    model = BertForTokenClassification.from_pretrained(f"{work}/enc-bert", num_labels=3)
    for dtype in ("fp32", "bf16") if device == 0 else ("fp32",):
        classifier = model.to(torch.bfloat16) if dtype == "bf16" else model
        tagger = pipeline("token-classification", model=classifier, tokenizer=tokenizer, device=device,
                          aggregation_strategy="simple", batch_size=64)
        tagger(sentences[:200])
        sync()
        started = time.perf_counter()
        tagger(sentences)
        sync()
        results[f"hf_pipeline_bert_{dtype}"] = len(sentences) / (time.perf_counter() - started)
        print(f"transformers pipeline, {dtype}: {results[f'hf_pipeline_bert_{dtype}']:.0f} sentences/s", flush=True)
    tagger = pipeline("token-classification", model=f"{work}/bert", trust_remote_code=True, device=device)
    texts = open(f"{work}/small.txt", encoding="utf-8").read().split("\n\n")[:-1]
    try:
        tagger(texts[:8], batch_size=8)
        sync()
        started = time.perf_counter()
        found = tagger(texts, batch_size=64)
        sync()
        how = "batch_size=64"
    except Exception as error:  # noqa: BLE001 (a pipeline that refuses batch_size: one text at a time)
        print("batch_size refused:", str(error)[:120])
        tagger(texts[:5])
        sync()
        started = time.perf_counter()
        found = [tagger(text) for text in texts]
        sync()
        how = "one text a call"
    results["hstl_pipeline_bert"] = 10 * len(texts) / (time.perf_counter() - started)
    print(f"HSTL pipeline ({how}): {results['hstl_pipeline_bert']:.0f} sentences/s, {sum(map(len, found))} entities",
          flush=True)
    Path(work, "pipelines.json").write_text(json.dumps(results), encoding="utf-8")


def _mentions(path: str) -> list[tuple]:
    found = []
    for line in open(path, encoding="utf-8"):
        record = json.loads(line)
        found += [(record.get("document"), entity.get("start"), entity.get("end"), entity.get("type"),
                   entity.get("score")) for entity in record.get("entities", [])]
    return found


def _loop_rate(log: str) -> float | None:
    """The tagging loop's own rate: the last `Tagging` progress bar's sentences per second."""
    rates = re.findall(r"Tagging: 100%[^\r\n]*?([0-9.]+)sentence/s", Path(log).read_text(errors="replace")) \
        if Path(log).is_file() else []
    return float(rates[-1]) if rates else None


def summary(work: str, out: str, steps: str) -> None:
    stages = {line.split()[0]: (int(line.split()[1]), float(line.split()[2])) for line in open(f"{out}/stages.txt")}
    ok = lambda name: name in stages and stages[name][0] == 0  # noqa: E731
    num_sentences = sum(1 for line in open(f"{work}/sentences.txt", encoding="utf-8") if line.strip())
    print(f"input: {num_sentences} test sentences of the five targets, as text")

    def rate(big: str, tiny: str) -> float | None:
        good = ok(big) and ok(tiny) and stages[big][1] > stages[tiny][1]
        return num_sentences / (stages[big][1] - stages[tiny][1]) if good else None

    rates = {"bert_fp32": rate("predict_bert_fp32_big", "predict_bert_fp32_tiny"),
             "bert_bf16": rate("predict_bert_bf16_big", "predict_bert_fp32_tiny"),
             "xlnet_fp32": rate("predict_xlnet_fp32_big", "predict_xlnet_tiny"),
             "xlnet_bf16": rate("predict_xlnet_bf16_big", "predict_xlnet_tiny")}
    for name, value in rates.items():
        if value:
            loop = _loop_rate(f"{out}/predict_{name}_big.log")
            inside = f"; {loop:.0f}/s inside the tagging loop" if loop else ""
            print(f"predict.py {name}: {value:.0f} sentences/s (whole file path, 5 heads; marginal over a 20-sentence "
                  f"run{inside})")
    if ok("predict_bert_fp32_tiny"):
        print(f"predict.py fixed cost (start-up, load, 20 sentences): {stages['predict_bert_fp32_tiny'][1]:.1f} s")
    train_rates = {}
    for name in ("train_bert", "train_xlnet"):
        log = Path(f"{out}/{name}.log")
        found = re.findall(rf"{steps}/{steps} \[[^,]*,\s*([0-9.]+)(it/s|s/it)", log.read_text(errors="replace")) \
            if ok(name) else []
        if found:
            value, unit = found[-1]
            train_rates[name] = float(value) if unit == "it/s" else 1 / float(value)
            print(f"train.py {name[6:]}: {train_rates[name]:.2f} steps/s (batch 32, bf16 on GPU)")
    anchor_log = Path(f"{out}/train_plain_anchor.log")
    anchor_rate = re.findall(r"plain BertForTokenClassification: ([0-9.]+) steps/s",
                             anchor_log.read_text(errors="replace")) if anchor_log.is_file() else []
    if anchor_rate:
        print(f"plain BertForTokenClassification loop: {float(anchor_rate[-1]):.2f} steps/s")
        if "train_bert" in train_rates:
            print(f"RATIO gpu_train_vs_plain_loop {train_rates['train_bert'] / float(anchor_rate[-1]):.3f}")
    if Path(f"{work}/pipelines.json").is_file():
        timed = json.loads(Path(f"{work}/pipelines.json").read_text(encoding="utf-8"))
        for dtype in ("fp32", "bf16"):
            if rates.get(f"bert_{dtype}") and timed.get(f"hf_pipeline_bert_{dtype}"):
                print(f"RATIO gpu_predict_vs_hf_pipeline_{dtype} "
                      f"{rates[f'bert_{dtype}'] / timed[f'hf_pipeline_bert_{dtype}']:.3f}")
        if timed.get("hstl_pipeline_bert") and timed.get("hf_pipeline_bert_fp32"):
            print(f"RATIO gpu_hstl_pipeline_vs_hf_pipeline "
                  f"{timed['hstl_pipeline_bert'] / timed['hf_pipeline_bert_fp32']:.3f}")
    if rates.get("bert_fp32") and rates.get("bert_bf16"):
        print(f"RATIO gpu_bf16_vs_fp32 {rates['bert_bf16'] / rates['bert_fp32']:.3f}")
    cpu, device = f"{work}/bert_cpu_tiny.jsonl", f"{work}/bert_fp32_tiny.jsonl"
    if os.path.exists(cpu) and os.path.exists(device):
        on_cpu, on_device = _mentions(cpu), _mentions(device)
        same = [mention[:4] for mention in on_cpu] == [mention[:4] for mention in on_device]
        gaps = [abs(a[4] - b[4]) for a, b in zip(on_cpu, on_device) if a[4] is not None and b[4] is not None]
        print(f"CPU vs GPU fp32 (20 sentences): {len(on_cpu)} vs {len(on_device)} mentions, same spans {same}, "
              f"largest score difference {max(gaps or [0]):.2e}")
    fp32, bf16 = f"{work}/bert_fp32_big.jsonl", f"{work}/bert_bf16_big.jsonl"
    if os.path.exists(fp32) and os.path.exists(bf16):
        a, b = {mention[:4] for mention in _mentions(fp32)}, {mention[:4] for mention in _mentions(bf16)}
        print(f"bf16 vs fp32 mentions: agreement {len(a & b) / max(1, len(a | b)):.4f} ({len(a)} vs {len(b)})")


if __name__ == "__main__":
    commands = {"inputs": inputs, "encoder": encoder, "configs": configs, "anchor": anchor, "pipelines": pipelines,
                "summary": summary}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: gpu_pass.py {{{','.join(commands)}}} ARGS...")
    commands[sys.argv[1]](*sys.argv[2:])
