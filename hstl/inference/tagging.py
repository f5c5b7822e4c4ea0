"""Tagging sentences with a model: batched, windowed prediction shared by evaluation (during training and in
`hstl.evaluation`), `predict.py` and the benchmarks.

Sentences become windows (`windows_hstl`), windows are sorted by length so batches carry little padding, the model
tags each batch with one or several heads from one encoder pass, and `stitch_predictions` puts every word's label back
in its sentence: every input word gets exactly one prediction. `tag_sentences` does all of it for lists of words and
returns labels; `tag_sentences_with_marginals` also returns each word's CRF marginals (label -> probability, from
the window that owns the word, as its label is), from which mention confidences are computed
(`mentions_hstl.mention_confidence`). Evaluation asks for labels only and pays nothing for marginals.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import torch
from accelerate import Accelerator
from accelerate.data_loader import prepare_data_loader
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mentions_hstl import word_marginals
from windows_hstl import (
    DEFAULT_MAX_LENGTH, DEFAULT_OVERLAP, METADATA_KEYS, HSTLDataCollator, length_sorted_order, make_windowing_map_fn,
    stitch_predictions, stitch_words,
)

from ..formats.conll import Sentence
from .loading import DEFAULT_BATCH_SIZE, WindowSettings, resolve_tasks

if TYPE_CHECKING:
    from datasets import Dataset  # imported where needed: prediction does not need it


class WindowRows:
    """Windows held as plain lists of columns, with the few `datasets.Dataset` methods prediction uses
    (`column_names`, a column by name, a row by index, `select`, `select_columns`): for sentences that are tagged
    once, an Arrow table (written, fingerprinted, then read back row by row) costs more than windowing them."""

    def __init__(self, columns: dict[str, list], order: Sequence[int] | None = None) -> None:
        self._columns = columns
        self._order = list(order) if order is not None else None

    @property
    def column_names(self) -> list[str]:
        return list(self._columns)

    def __len__(self) -> int:
        return len(self._order) if self._order is not None else len(next(iter(self._columns.values()), []))

    def __getitem__(self, key: str | int):
        if isinstance(key, str):
            column = self._columns[key]
            return column if self._order is None else [column[index] for index in self._order]
        row = key if self._order is None else self._order[key]
        return {name: column[row] for name, column in self._columns.items()}

    def select(self, indices: Sequence[int]) -> WindowRows:
        order = list(indices) if self._order is None else [self._order[index] for index in indices]
        return WindowRows(self._columns, order)

    def select_columns(self, names: Sequence[str]) -> WindowRows:
        return WindowRows({name: self._columns[name] for name in names}, self._order)


def build_task_dataset(
    tokenizer,
    sentences: Sequence[Sentence] | Sequence[Sequence[str]],
    label2id: dict[str, int] | None,
    task_id: int,
    max_length: int,
    overlap: int,
) -> Dataset | WindowRows:
    """Windows and tokenizes sentences (with labels when they have them and `label2id` is given).

    With `label2id` (training) the windows are a `datasets.Dataset`; without (prediction, evaluation) they are
    `WindowRows`, which `predict_windows` reads like one at a fraction of the cost, and `datasets` is not imported.
    """
    tokens = [sentence.tokens if isinstance(sentence, Sentence) else list(sentence) for sentence in sentences]
    columns = {"tokens": tokens, "sentence_index": list(range(len(tokens)))}
    if label2id is not None and all(getattr(sentence, "labels", None) is not None for sentence in sentences):
        columns["labels"] = [sentence.labels for sentence in sentences]
    windows = make_windowing_map_fn(tokenizer, label2id or {}, task_id, max_length, overlap)(columns)
    if label2id is None:
        return WindowRows(windows)
    from datasets import Dataset

    return Dataset.from_dict(windows)


@dataclass
class WindowPredictions:
    """What `predict_windows` returns, one entry per window in the same order (gathered from all processes)."""

    labels: dict[str, list[list[int]]]
    """Task name -> per-window label ids (window-relative words; -100 past a window's words)."""
    metadata: list[dict[str, int]]
    """Per-window `sentence_index`, `word_offset`, `owned_start`, `owned_end`."""
    marginals: dict[str, list[list[list[float]]]] | None = None
    """Task name -> per window, per word, the CRF marginal of each of the head's labels; only when asked."""


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
    return_marginals: bool = False,
) -> WindowPredictions:
    """
    Tags every window of `dataset` with the heads `task_names` (one encoder pass per batch); `return_marginals` adds
    each head's CRF marginals.

    `across_processes=False` tags all of `dataset` in this process alone (no sharding, no gathering): for callers that
    give each process its own sentences (`hstl.inference.sharding`). `on_sentences_tagged(n)` is called after each
    batch with the number of sentences whose first window it held (this process's), for a progress bar.

    Returns:
        Per-window labels, metadata (and marginals), in the same order, gathered from all processes (unless
        `across_processes` is False).
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
    result = WindowPredictions({name: [] for name in task_names}, [],
                               {name: [] for name in task_names} if return_marginals else None)
    for batch in tqdm(dataloader, desc="Predicting", disable=not (show_progress and accelerator.is_local_main_process)):
        output = unwrapped.tag(**batch, tasks=task_names, return_marginals=return_marginals)
        # shape: (batch, 4)
        metadata = torch.stack([batch[column] for column in METADATA_KEYS], dim=1)
        if on_sentences_tagged is not None:
            on_sentences_tagged(int((batch["word_offset"] == 0).sum()))
        predictions = [output.predictions[name] for name in task_names]
        marginals = [output.marginals[name] for name in task_names] if return_marginals else []
        if across_processes:
            predictions = [accelerator.pad_across_processes(tensor, dim=1, pad_index=-100) for tensor in predictions]
            marginals = [accelerator.pad_across_processes(tensor, dim=1, pad_index=0) for tensor in marginals]
            metadata, *gathered = accelerator.gather_for_metrics((metadata, *predictions, *marginals))
            predictions, marginals = gathered[:len(task_names)], gathered[len(task_names):]
        for name, tensor in zip(task_names, predictions):
            result.labels[name].extend(tensor.tolist())
        for name, tensor in zip(task_names, marginals):
            result.marginals[name].extend(tensor.tolist())
        result.metadata.extend(dict(zip(METADATA_KEYS, row)) for row in metadata.tolist())
    unwrapped.train(was_training)
    return result


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
    windows = predict_windows(
        model, dataset, collator, accelerator, task_names, batch_size=batch_size, show_progress=show_progress,
        across_processes=across_processes, on_sentences_tagged=on_sentences_tagged,
    )
    return {name: stitch_predictions(windows.labels[name], windows.metadata, num_words) for name in task_names}


def predict_task_labels(model, dataset, collator, accelerator, task_name, num_words, batch_size=64) -> list[list[int]]:
    """Label ids of every word of every sentence with one task's head."""
    return predict_labels(model, dataset, collator, accelerator, [task_name], num_words, batch_size)[task_name]


# ---------------------------------------------------------------------------------------------------------------------
# Lists of words in, labels out


@contextlib.contextmanager
def _datasets_progress_bars_off() -> Iterator[None]:
    """Windowing one chunk is quick: a `datasets.map` progress bar per chunk would only bury the real one."""
    datasets = sys.modules.get("datasets")
    if datasets is None:  # not imported: nothing of it will show a bar
        yield
        return
    were_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not were_disabled:
            datasets.enable_progress_bars()


@dataclass
class TaggedSentences:
    """What `tag_sentences_with_marginals` returns; tasks in the order asked."""

    labels: dict[str, list[list[str]]]
    """Task name -> per sentence, one IOB2 label per word (`[]` for an empty sentence)."""
    marginals: dict[str, list[list[dict[str, float]]]]
    """Task name -> per sentence, per word, `{label: CRF marginal}` over the head's labels, from the window that
    owns the word (`mentions_hstl.word_marginals`)."""


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
        settings: windows and batches (`hstl.inference.loading.window_settings`); default: `windows_hstl`'s window
            defaults and `DEFAULT_BATCH_SIZE`.
        accelerator: an `accelerate.Accelerator`; default: one on the model's device.
        show_progress: show a progress bar over batches.
        across_processes: split the batches among the processes and gather the labels (False: this process tags
            all of `sentences_tokens` alone, as each process does with its own share in a sharded `predict.py`).
        on_sentences_tagged: called after each batch with the number of (non-empty) sentences it started.

    Returns:
        Task name -> per sentence, one IOB2 label per word (`[]` for an empty sentence), in the order of `tasks`.
    """
    return _tag(model, tokenizer, sentences_tokens, tasks, settings, accelerator, show_progress, across_processes,
                on_sentences_tagged, return_marginals=False).labels


def tag_sentences_with_marginals(
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
) -> TaggedSentences:
    """`tag_sentences` (same arguments), with each word's CRF marginals under each head besides its label."""
    return _tag(model, tokenizer, sentences_tokens, tasks, settings, accelerator, show_progress, across_processes,
                on_sentences_tagged, return_marginals=True)


def _tag(model, tokenizer, sentences_tokens, tasks, settings, accelerator, show_progress, across_processes,
         on_sentences_tagged, return_marginals: bool) -> TaggedSentences:
    if settings is None:
        settings = WindowSettings(DEFAULT_MAX_LENGTH, DEFAULT_OVERLAP, DEFAULT_BATCH_SIZE)
    if accelerator is None:
        accelerator = Accelerator(cpu=model.device.type == "cpu")
    config = accelerator.unwrap_model(model).config
    task_names = resolve_tasks(config, tasks)
    sentences = [list(tokens) for tokens in sentences_tokens]
    tagged = TaggedSentences({name: [[] for _ in sentences] for name in task_names},
                             {name: [[] for _ in sentences] for name in task_names})
    # An empty sentence has no window; it gets its (empty) label list without a trip through the model.
    non_empty = [index for index, tokens in enumerate(sentences) if tokens]
    if not non_empty:
        return tagged
    with _datasets_progress_bars_off():
        dataset = build_task_dataset(tokenizer, [sentences[index] for index in non_empty], None, 0,
                                     settings.max_length, settings.overlap)
    windows = predict_windows(
        model, dataset, HSTLDataCollator(tokenizer), accelerator, task_names, batch_size=settings.batch_size,
        show_progress=show_progress, across_processes=across_processes, on_sentences_tagged=on_sentences_tagged,
        return_marginals=return_marginals,
    )
    return tagged_sentences(config, task_names, [len(tokens) for tokens in sentences], windows)


def tagged_sentences(config, task_names: Sequence[str], num_words: Sequence[int],
                     windows: WindowPredictions) -> TaggedSentences:
    """Labels and marginals of every sentence (`num_words[s]` words each; 0 for an empty sentence, which has no
    window and gets empty lists) from the predictions of the windows of the non-empty ones, whose `sentence_index`
    counts non-empty sentences only."""
    non_empty = [index for index, count in enumerate(num_words) if count]
    tagged = TaggedSentences({name: [[] for _ in num_words] for name in task_names},
                             {name: [[] for _ in num_words] for name in task_names})
    words_of_non_empty = [num_words[index] for index in non_empty]
    for name in task_names:
        head_labels = config.task(name)["labels"]
        label_ids = stitch_predictions(windows.labels[name], windows.metadata, words_of_non_empty)
        for index, sentence_label_ids in zip(non_empty, label_ids):
            tagged.labels[name][index] = [head_labels[label_id] for label_id in sentence_label_ids]
        if windows.marginals is not None:
            marginals = stitch_words(windows.marginals[name], windows.metadata, words_of_non_empty)
            for index, sentence_marginals in zip(non_empty, marginals):
                tagged.marginals[name][index] = word_marginals(head_labels, sentence_marginals)
    return tagged


def labels_per_sentence(labels_by_task: Mapping[str, Sequence[Sequence[Any]]]) -> list[dict[str, Sequence[Any]]]:
    """`{task: [sentence labels, ...]}` -> `[{task: sentence labels}, ...]`, tasks kept in order (for any per-word
    values, e.g. marginals, too). The sentences' sequences are shared, not copied: the feed's word marginals are
    built only for the words a mention reads."""
    counts = {len(per_sentence) for per_sentence in labels_by_task.values()}
    assert len(counts) <= 1, "every task labels the same sentences"
    num_sentences = counts.pop() if counts else 0
    return [{task: per_sentence[index] for task, per_sentence in labels_by_task.items()}
            for index in range(num_sentences)]
