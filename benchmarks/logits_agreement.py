"""How often `HSTLForTokenClassification`'s `logits.argmax(-1)` (the max-marginal decoding: logits are log CRF
marginals) gives a word the label of the head's Viterbi decoding, over the test splits of the corpora of a run config.

    python benchmarks/logits_agreement.py --model runs/demo --config configs/demo.yaml

Each corpus is tagged by its own head (the run config's task of that name), one sentence per row, each word read at
its first sub-token (`word_ids`); a sentence longer than the encoder's positions is skipped and counted. Prints one
line per corpus and `TOTAL agreeing/words = fraction`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="Model folder written by train.py or finetune.py.")
    parser.add_argument("--config", required=True, type=Path, help="Run config naming the corpora and their heads.")
    parser.add_argument("--split", default="test", help="Split to tag (default: test).")
    parser.add_argument("--batch_size", type=int, default=16, help="Sentences per forward pass.")
    return parser.parse_args(argv)


def agreement(classifier, tokenizer, sentences: list[list[str]], head: str, batch_size: int) -> tuple[int, int, int]:
    """(words whose argmax label is the Viterbi label, words, sentences skipped as too long)."""
    config = classifier.config
    to_merged = [config.label2id[label] for label in config.entity_labels(head)]
    max_positions = getattr(classifier.hstl.encoder.config, "max_position_embeddings", None) or 10**9
    agreeing = words = skipped = 0
    for start in range(0, len(sentences), batch_size):
        batch = [sentence for sentence in sentences[start:start + batch_size] if sentence]
        encoding = tokenizer(batch, is_split_into_words=True, return_tensors="pt", padding=True)
        if encoding["input_ids"].shape[1] > max_positions:
            skipped += len(batch)
            continue
        word_ids = torch.tensor([[-1 if word is None else word for word in encoding.word_ids(row)]
                                 for row in range(len(batch))])
        with torch.no_grad():
            output = classifier(**encoding, word_ids=word_ids, tasks=[head])
        for row in range(len(batch)):
            starts = output.word_start_positions[row]
            starts = starts[starts >= 0]
            argmax = output.logits[row, starts].argmax(-1).tolist()
            viterbi = [to_merged[label] for label in output.task_predictions[head][row, :len(starts)].tolist()]
            agreeing += sum(a == v for a, v in zip(argmax, viterbi))
            words += len(starts)
    return agreeing, words, skipped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from hstl.corpora import load_task_data
    from hstl.inference.loading import load_model_and_tokenizer
    from hstl.run_config import load_run_config
    from modeling_hstl import HSTLForTokenClassification

    model, tokenizer = load_model_and_tokenizer(args.model)
    classifier = HSTLForTokenClassification(model.config).eval()
    classifier.hstl.load_state_dict(model.state_dict())
    total_agreeing = total_words = 0
    for task in load_task_data(load_run_config(args.config)):
        sentences = [sentence.tokens for sentence in task.splits[args.split]]
        agreeing, words, skipped = agreement(classifier, tokenizer, sentences, task.name, args.batch_size)
        total_agreeing, total_words = total_agreeing + agreeing, total_words + words
        print(f"{task.name}\t{agreeing}/{words} = {agreeing / max(words, 1):.4f}\tskipped sentences: {skipped}")
    print(f"TOTAL\t{total_agreeing}/{total_words} = {total_agreeing / max(total_words, 1):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
