"""Tagging sentences with a model: batched, windowed prediction shared by evaluation (during training and in
`hstl.evaluation`), `predict.py` and the benchmarks.

Sentences become windows (`processing_hstl`), windows are sorted by length so batches carry little padding, the model
tags each batch with one or several heads from one encoder pass, and `stitch_predictions` puts every word's label back
in its sentence: every input word gets exactly one prediction. `tag_sentences` does all of it for lists of words and
returns labels.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Mapping, Sequence

import torch
from accelerate import Accelerator
from accelerate.data_loader import prepare_data_loader
from datasets import Dataset
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from processing_hstl import (
    METADATA_KEYS, HSTLDataCollator, length_sorted_order, make_windowing_map_fn, stitch_predictions,
)

from ..formats.conll import Sentence
from .loading import WindowSettings, resolve_tasks


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


@torch.no_grad()
def predict_windows(
    model,
    dataset: Dataset,
    collator: HSTLDataCollator,
    accelerator: Accelerator,
    task_names: list[str],
    batch_size: int = 64,
    show_progress: bool = False,
    across_processes: bool = True,
    on_sentences_tagged: Callable[[int], None] | None = None,
) -> tuple[dict[str, list[list[int]]], list[dict[str, int]]]:
    """
    Tags every window of `dataset` with the heads `task_names` (one encoder pass per batch).

    `across_processes=False` tags all of `dataset` in this process alone (no sharding, no gathering): for callers that
    give each process its own sentences (`hstl.inference.sharding`). `on_sentences_tagged(n)` is called after each
    batch with the number of sentences whose first window it held (this process's), for a progress bar.

    Returns:
        task name -> per-window label ids (window-relative words), and per-window metadata rows; both in the same order,
        gathered from all processes (unless `across_processes` is False).
    """
    unwrapped = accelerator.unwrap_model(model)
    was_training = unwrapped.training
    unwrapped.eval()
    model_columns = [column for column in dataset.column_names if column != "labels"]
    longest_first = dataset.select(length_sorted_order([len(ids) for ids in dataset["input_ids"]]))
    dataloader = DataLoader(longest_first.select_columns(model_columns), batch_size=batch_size, collate_fn=collator)
    # The module-level `prepare_data_loader` shards like `accelerator.prepare` but does not register the loader with
    # the accelerator, whose checkpoints would otherwise grow by one entry per evaluation.
    num_processes, process_index = (accelerator.num_processes, accelerator.process_index) if across_processes else (1, 0)
    dataloader = prepare_data_loader(
        dataloader, device=accelerator.device, num_processes=num_processes, process_index=process_index,
        split_batches=False, put_on_device=True,
    )
    window_predictions: dict[str, list[list[int]]] = {name: [] for name in task_names}
    metadata_rows: list[dict[str, int]] = []
    for batch in tqdm(dataloader, desc="Predicting", disable=not (show_progress and accelerator.is_local_main_process)):
        output = unwrapped.tag(**batch, tasks=task_names)
        # shape: (batch, 4)
        metadata = torch.stack([batch[column] for column in METADATA_KEYS], dim=1)
        if on_sentences_tagged is not None:
            on_sentences_tagged(int((batch["word_offset"] == 0).sum()))
        if not across_processes:
            for name in task_names:
                window_predictions[name].extend(output.predictions[name].tolist())
            metadata_rows.extend(dict(zip(METADATA_KEYS, row)) for row in metadata.tolist())
            continue
        per_task = [accelerator.pad_across_processes(output.predictions[name], dim=1, pad_index=-100)
                    for name in task_names]
        gathered_metadata, *gathered_predictions = accelerator.gather_for_metrics((metadata, *per_task))
        for name, predictions in zip(task_names, gathered_predictions):
            window_predictions[name].extend(predictions.tolist())
        metadata_rows.extend(dict(zip(METADATA_KEYS, row)) for row in gathered_metadata.tolist())
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
    across_processes: bool = True,
    on_sentences_tagged: Callable[[int], None] | None = None,
) -> dict[str, list[list[int]]]:
    """Task name -> label ids of every word of every sentence (sentence `i` has `num_words[i]` words)."""
    window_predictions, metadata = predict_windows(
        model, dataset, collator, accelerator, task_names, batch_size=batch_size, show_progress=show_progress,
        across_processes=across_processes, on_sentences_tagged=on_sentences_tagged,
    )
    return {name: stitch_predictions(window_predictions[name], metadata, num_words) for name in task_names}


def predict_task_labels(model, dataset, collator, accelerator, task_name, num_words, batch_size=64) -> list[list[int]]:
    """Label ids of every word of every sentence with one task's head."""
    return predict_labels(model, dataset, collator, accelerator, [task_name], num_words, batch_size)[task_name]


# ---------------------------------------------------------------------------------------------------------------------
# Lists of words in, labels out


@contextlib.contextmanager
def _datasets_progress_bars_off() -> Iterator[None]:
    """Windowing one chunk is quick: a `datasets.map` progress bar per chunk would only bury the real one."""
    import datasets

    were_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not were_disabled:
            datasets.enable_progress_bars()


def tag_sentences(
    model,
    tokenizer,
    sentences_tokens: Sequence[Sequence[str]],
    tasks: Sequence[str] | None = None,
    *,
    settings: WindowSettings | None = None,
    accelerator: Accelerator | None = None,
    show_progress: bool = False,
    across_processes: bool = True,
    on_sentences_tagged: Callable[[int], None] | None = None,
) -> dict[str, list[list[str]]]:
    """Labels every word of every sentence with each chosen head, from one encoder pass per batch.

    Args:
        model: an `HSTLModel` (possibly prepared by `accelerator`).
        tokenizer: its fast tokenizer.
        sentences_tokens: sentences as lists of words; any strings, empty sentences included.
        tasks: head names (default: all of the model's, in its order).
        settings: windows and batches (`hstl.inference.loading.window_settings`); default: train.py's defaults.
        accelerator: an `accelerate.Accelerator`; default: one on the model's device.
        show_progress: show a progress bar over batches.
        across_processes: split the batches among the processes and gather the labels (False: this process tags
            all of `sentences_tokens` alone, as each process does with its own share in a sharded `predict.py`).
        on_sentences_tagged: called after each batch with the number of (non-empty) sentences it started.

    Returns:
        Task name -> per sentence, one IOB2 label per word (`[]` for an empty sentence), in the order of `tasks`.
    """
    if settings is None:
        from ..run_config import TrainingSpec

        settings = WindowSettings(TrainingSpec.max_length, TrainingSpec.window_overlap, TrainingSpec.eval_batch_size)
    if accelerator is None:
        accelerator = Accelerator(cpu=model.device.type == "cpu")
    config = accelerator.unwrap_model(model).config
    task_names = resolve_tasks(config, tasks)
    sentences = [list(tokens) for tokens in sentences_tokens]
    labels: dict[str, list[list[str]]] = {name: [[] for _ in sentences] for name in task_names}
    # An empty sentence has no window; it gets its (empty) label list without a trip through the model.
    non_empty = [index for index, tokens in enumerate(sentences) if tokens]
    if not non_empty:
        return labels
    with _datasets_progress_bars_off():
        dataset = build_task_dataset(tokenizer, [sentences[index] for index in non_empty], None, 0,
                                     settings.max_length, settings.overlap)
    label_ids = predict_labels(
        model, dataset, HSTLDataCollator(tokenizer), accelerator, task_names,
        [len(sentences[index]) for index in non_empty], batch_size=settings.batch_size, show_progress=show_progress,
        across_processes=across_processes, on_sentences_tagged=on_sentences_tagged,
    )
    for name in task_names:
        id2label = config.task_id2label(name)
        for index, sentence_label_ids in zip(non_empty, label_ids[name]):
            labels[name][index] = [id2label[label_id] for label_id in sentence_label_ids]
    return labels


def labels_per_sentence(labels_by_task: Mapping[str, Sequence[Sequence[str]]]) -> list[dict[str, list[str]]]:
    """`{task: [sentence labels, ...]}` -> `[{task: sentence labels}, ...]`, tasks kept in order."""
    counts = {len(per_sentence) for per_sentence in labels_by_task.values()}
    assert len(counts) <= 1, "every task labels the same sentences"
    num_sentences = counts.pop() if counts else 0
    return [{task: list(per_sentence[index]) for task, per_sentence in labels_by_task.items()}
            for index in range(num_sentences)]
