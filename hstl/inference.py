"""Batched, windowed prediction shared by evaluation during training, `eval/`, `predict.py` and the benchmarks.

Sentences become windows (`processing_hstl`), windows are sorted by length so batches carry little padding, the model
tags each batch with one or several heads from one encoder pass, and `stitch_predictions` puts every word's label back
in its sentence: every input word gets exactly one prediction.
"""

from __future__ import annotations

from typing import Sequence

import torch
from accelerate import Accelerator
from accelerate.data_loader import prepare_data_loader
from datasets import Dataset
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from processing_hstl import HSTLDataCollator, make_windowing_map_fn, stitch_predictions
from .data import Sentence


METADATA_COLUMNS = ("sentence_index", "word_offset", "owned_start", "owned_end")


def build_task_dataset(
    tokenizer,
    sentences: Sequence[Sentence] | Sequence[Sequence[str]],
    label2id: dict[str, int] | None,
    task_id: int,
    max_length: int,
    overlap: int,
) -> Dataset:
    """Windows and tokenizes sentences (with labels when they have them and `label2id` is given) via `datasets.map`."""
    tokens = [sentence.tokens if isinstance(sentence, Sentence) else list(sentence) for sentence in sentences]
    columns = {"tokens": tokens, "sentence_index": list(range(len(tokens)))}
    labelled = label2id is not None and all(getattr(sentence, "labels", None) is not None for sentence in sentences)
    if labelled:
        columns["labels"] = [sentence.labels for sentence in sentences]
    dataset = Dataset.from_dict(columns)
    windowing = make_windowing_map_fn(tokenizer, label2id or {}, task_id, max_length, overlap)
    return dataset.map(windowing, batched=True, remove_columns=dataset.column_names, desc="Tokenizing and windowing")


def _length_sorted(dataset: Dataset) -> Dataset:
    # Longest first: padding is wasted compute, and an out-of-memory error shows up on the first batch, not the last.
    lengths = [len(ids) for ids in dataset["input_ids"]]
    order = sorted(range(len(lengths)), key=lambda index: -lengths[index])
    return dataset.select(order)


@torch.no_grad()
def predict_windows(
    model,
    dataset: Dataset,
    collator: HSTLDataCollator,
    accelerator: Accelerator,
    task_names: list[str],
    batch_size: int = 64,
    show_progress: bool = False,
) -> tuple[dict[str, list[list[int]]], list[dict[str, int]]]:
    """
    Tags every window of `dataset` with the heads `task_names` (one encoder pass per batch).

    Returns:
        task name -> per-window label ids (window-relative words), and per-window metadata rows; both in the same order,
        gathered from all processes.
    """
    unwrapped = accelerator.unwrap_model(model)
    was_training = unwrapped.training
    unwrapped.eval()
    model_columns = [column for column in dataset.column_names if column != "labels"]
    dataloader = DataLoader(_length_sorted(dataset).select_columns(model_columns), batch_size=batch_size,
                            collate_fn=collator)
    # The module-level `prepare_data_loader` shards like `accelerator.prepare` but does not register the loader with
    # the accelerator, whose checkpoints would otherwise grow by one entry per evaluation.
    dataloader = prepare_data_loader(
        dataloader, device=accelerator.device, num_processes=accelerator.num_processes,
        process_index=accelerator.process_index, split_batches=False, put_on_device=True,
    )
    window_predictions: dict[str, list[list[int]]] = {name: [] for name in task_names}
    metadata_rows: list[dict[str, int]] = []
    for batch in tqdm(dataloader, desc="Predicting", disable=not (show_progress and accelerator.is_local_main_process)):
        output = unwrapped.tag(**batch, tasks=task_names)
        # shape: (batch, 4)
        metadata = torch.stack([batch[column] for column in METADATA_COLUMNS], dim=1)
        per_task = [accelerator.pad_across_processes(output.predictions[name], dim=1, pad_index=-100)
                    for name in task_names]
        gathered_metadata, *gathered_predictions = accelerator.gather_for_metrics((metadata, *per_task))
        for name, predictions in zip(task_names, gathered_predictions):
            window_predictions[name].extend(predictions.tolist())
        metadata_rows.extend(dict(zip(METADATA_COLUMNS, row)) for row in gathered_metadata.tolist())
    unwrapped.train(was_training)
    return window_predictions, metadata_rows


def predict_labels(
    model,
    dataset: Dataset,
    collator: HSTLDataCollator,
    accelerator: Accelerator,
    task_names: list[str],
    num_words: Sequence[int],
    batch_size: int = 64,
    show_progress: bool = False,
) -> dict[str, list[list[int]]]:
    """Task name -> label ids of every word of every sentence (sentence `i` has `num_words[i]` words)."""
    window_predictions, metadata = predict_windows(
        model, dataset, collator, accelerator, task_names, batch_size=batch_size, show_progress=show_progress
    )
    return {name: stitch_predictions(window_predictions[name], metadata, num_words) for name in task_names}


def predict_task_labels(model, dataset, collator, accelerator, task_name, num_words, batch_size=64) -> list[list[int]]:
    """Label ids of every word of every sentence with one task's head."""
    return predict_labels(model, dataset, collator, accelerator, [task_name], num_words, batch_size)[task_name]
