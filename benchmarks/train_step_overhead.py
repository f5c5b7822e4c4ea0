"""HSTL's training step against a plain `BertForTokenClassification` step with the same tiny encoder and batch sizes.

    OMP_NUM_THREADS=1 python benchmarks/train_step_overhead.py --threads 1            # a few minutes
    OMP_NUM_THREADS=1 python benchmarks/train_step_overhead.py --threads 1 --profile  # and where HSTL's time goes
    python benchmarks/train_step_overhead.py --quick                                  # smoke test

With an encoder this small (BERT, hidden 32, 2 layers) the encoder costs little, so what remains is HSTL's own work:

    hstl    what `train.py` does per batch: the multi-task sampler and the loader over every task's windows
            (`hstl.training.build_train_loader`, `datasets` rows, `HSTLDataCollator`), then `train_on_batch` (forward
            with labels through the family layer and the task's CRF loss, backward, clipping, AdamW, scheduler),
            5 tasks of 3 labels in 3 families, one task per batch (the default `batch_mode`)
    plain   the transformers loop: a `DataLoader` over the same sentences tokenized once, with
            `DataCollatorForTokenClassification` (first sub-token labelled, the rest -100), then forward, backward,
            clipping, AdamW and a scheduler on `BertForTokenClassification` (3 labels, cross-entropy)

Both take the same number of steps of `--batch_size` sentences per round (the sentences are short enough to need one
window each), measured side by side (`_common.time_interleaved`). Prints the time per step of each, then
`RATIO train_step_vs_plain_token_classification <plain seconds / hstl seconds>` (1.0: no overhead; target >= 0.67).
`--profile` then prints the 25 functions where HSTL's steps spend most of their own time (cProfile).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import types

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from transformers import BertConfig, BertForTokenClassification, DataCollatorForTokenClassification, get_scheduler

import _common
from configuration_hstl import HSTLConfig
from hstl.data import Sentence
from hstl.inference import build_task_dataset
from hstl.run_config import ModelSpec, RunConfig, TrainingSpec
from hstl.training import RunningLoss, build_optimizer, build_train_loader, train_on_batch
from modeling_hstl import HSTLModel
from windows_hstl import HSTLDataCollator


TASKS = [(f"task{index}", family) for index, family in enumerate(["chemical", "disease", "gene", "chemical",
                                                                    "species"])]
LABELS = ["O", "B-X", "I-X"]
FULL = {"batch_size": 32, "steps": 20, "rounds": 5, "max_length": 128}
QUICK = {"batch_size": 4, "steps": 3, "rounds": 1, "max_length": 128}


def tiny_encoder_config(tokenizer) -> BertConfig:
    return BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=37, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id)


def structure_sentences(sentences):
    """The sentences with their gold IOB structure as labels of one entity type `X` (valid in every head)."""
    return [Sentence(sentence.tokens, [label if label == "O" else f"{label[0]}-X" for label in sentence.labels],
                     sentence.line)
            for sentence in sentences]


def hstl_loader(tokenizer, sentences, settings: dict, config: HSTLConfig, training: TrainingSpec):
    """HSTL's training loader over the sentences, split evenly among `TASKS` (task i holds the i-th fifth)."""
    per_task = len(sentences) // len(TASKS)
    train_sets = [
        build_task_dataset(tokenizer, sentences[index * per_task:(index + 1) * per_task], config.task_label2id(name),
                           index, training.max_length, training.window_overlap)
        for index, (name, _) in enumerate(TASKS)
    ]
    return build_train_loader(train_sets, HSTLDataCollator(tokenizer), training)[1]


def hstl_steps(tokenizer, sentences, settings: dict, num_steps: int) -> tuple[list, list[list[int]]]:
    """One callable per step, each taking the next batch from HSTL's training loader and training on it; and, per
    step, the indices in `sentences` of the batch's rows (read off an identical loader beforehand)."""
    training = TrainingSpec(train_batch_size=settings["batch_size"], max_steps=10**6, max_length=settings["max_length"])
    run_config = RunConfig(model=ModelSpec(), tasks=[], training=training)
    config = HSTLConfig(encoder_config=tiny_encoder_config(tokenizer).to_dict(),
                        tasks=[{"name": name, "labels": LABELS, "family": family} for name, family in TASKS])
    accelerator = Accelerator(cpu=True)
    per_task = len(sentences) // len(TASKS)
    recorded = list(_batches(accelerator.prepare(hstl_loader(tokenizer, sentences, settings, config, training)),
                             num_steps))
    rows_per_step = [sentence_rows(batch, per_task) for batch in recorded]
    print(f"# sub-token slots incl. padding, first 20 steps: hstl "
          f"{sum(batch['input_ids'].numel() for batch in recorded[:20])}")
    model = HSTLModel(config)
    optimizer = build_optimizer(model, run_config)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=0, num_training_steps=10**6)
    model, optimizer, loader, scheduler = accelerator.prepare(
        model, optimizer, hstl_loader(tokenizer, sentences, settings, config, training), scheduler)
    run = types.SimpleNamespace(accelerator=accelerator, model=model, optimizer=optimizer, scheduler=scheduler,
                                training=training, task_names=config.task_names)
    running = RunningLoss(len(TASKS), accelerator.device)
    model.train()
    batches = _batches(loader, num_steps)
    return [lambda: train_on_batch(run, next(batches), running)] * num_steps, rows_per_step


def sentence_rows(batch, per_task: int) -> list[int]:
    """Indices in the benchmark's sentences of a batch's rows (task i holds sentences `[i * per_task, ...)`)."""
    return [int(task) * per_task + int(index) for task, index in zip(batch["task_ids"], batch["sentence_index"])]


def plain_steps(tokenizer, sentences, settings: dict, rows_per_step: list[list[int]]) -> list:
    """One callable per step of the transformers token-classification loop, step i on the sentences
    `rows_per_step[i]` (those of HSTL's step i, so that both pad to the same lengths)."""
    label2id = {label: index for index, label in enumerate(LABELS)}
    features = []
    for sentence in sentences:
        encoding = tokenizer(sentence.tokens, is_split_into_words=True, truncation=True,
                             max_length=settings["max_length"])
        previous, labels = None, []
        for word in encoding.word_ids():
            labels.append(-100 if word is None or word == previous else label2id[sentence.labels[word]])
            previous = word
        features.append({**encoding, "labels": labels})
    config = tiny_encoder_config(tokenizer)
    config.num_labels = len(LABELS)
    model = BertForTokenClassification(config)
    collator = DataCollatorForTokenClassification(tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=0, num_training_steps=10**6)
    model.train()
    steps = iter(rows_per_step)
    print(f"# sub-token slots incl. padding, first 20 steps: plain "
          f"{sum(collator([features[row] for row in rows])['input_ids'].numel() for rows in rows_per_step[:20])}")

    def step() -> None:
        batch = collator([features[row] for row in next(steps)])
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()

    return [step] * len(rows_per_step)


def _batches(loader, num_batches: int):
    """`num_batches` batches of `loader`, restarting it whenever it ends."""
    drawn = 0
    while True:
        for batch in loader:
            if drawn == num_batches:
                return
            drawn += 1
            yield batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _common.add_common_arguments(parser)
    parser.add_argument("--profile", action="store_true", help="Also profile HSTL's steps (cProfile, own time).")
    args = parser.parse_args()
    settings = dict(QUICK if args.quick else FULL)
    rounds = args.rounds or settings["rounds"]
    _common.setup_run(args)
    tokenizer = _common.load_tokenizer()
    # Enough sentences for every task's loader to last several rounds without restarting.
    sentences = structure_sentences(_common.load_sentences("train", settings["batch_size"] * settings["steps"] * 8))
    # One window per sentence, so that HSTL's rows and the plain loop's are the same sequences.
    sentences = [sentence for sentence in sentences if len(tokenizer(sentence.tokens, is_split_into_words=True)
                                                           ["input_ids"]) <= settings["max_length"]]
    # Every step of every round, warm-up and profile included, draws a batch of its own.
    total_steps = settings["steps"] * (rounds + 2)
    hstl, rows_per_step = hstl_steps(tokenizer, sentences, settings, total_steps)
    plain = plain_steps(tokenizer, sentences, settings, rows_per_step)
    step_units = settings["steps"]
    variants = {"hstl": hstl[:step_units], "plain": plain[:step_units]}
    print(f"# {settings['steps']} steps of {settings['batch_size']} sentences per round, {rounds} rounds; tiny BERT "
          f"encoder (hidden 32, 2 layers); HSTL: {len(TASKS)} tasks of 3 labels, one per batch")
    seconds = _common.time_interleaved(variants, rounds=rounds)
    for name, value in seconds.items():
        print(f"# {name}: {1000 * value / settings['steps']:.1f} ms per step")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for step in variants["hstl"]:
            step()
        profiler.disable()
        report = io.StringIO()
        pstats.Stats(profiler, stream=report).sort_stats("tottime").print_stats(25)
        print("\n".join(f"# {line}" for line in report.getvalue().splitlines() if line.strip()))
    _common.print_ratio("train_step_vs_plain_token_classification", seconds["plain"] / seconds["hstl"])


if __name__ == "__main__":
    main()
