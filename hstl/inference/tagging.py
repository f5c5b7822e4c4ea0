"""Tagging sentences with a model: batched, windowed prediction shared by evaluation (during training and in
`hstl.evaluation`), `predict.py` and the benchmarks.

Sentences become windows (`windows_hstl`), windows are batched as `predict.py`'s feed batches them (by padded shape,
up to a number of padded sub-tokens: `hstl.inference.feed.plan_batches`), so that evaluation scores what `predict.py`
tags, even where a row's result depends on its batch mates (dynamic int8 quantization); the model tags each batch
with one or several heads from one encoder pass, and `stitch_predictions` puts every word's label back in its
sentence: every input word gets exactly one prediction. `tag_sentences` does all of it for lists of words and
returns labels; `tag_sentences_with_marginals` also returns each word's CRF marginals (label -> probability, from
the window that owns the word, as its label is), from which mention confidences are computed
(`mentions_hstl.mention_confidence`). Evaluation asks for labels only and pays nothing for marginals.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mentions_hstl import word_marginals
from windows_hstl import (
    DEFAULT_MAX_LENGTH, DEFAULT_OVERLAP, METADATA_KEYS, HSTLDataCollator, make_windowing_map_fn, stitch_predictions,
    stitch_words,
)

from ..formats.conll import Sentence
from .feed import DEFAULT_BATCH_TOKENS, MODEL_INPUT_KEYS, PAD_TO_MULTIPLE_OF, words_padded_alike, plan_batches
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
    dataset: Dataset | WindowRows,
    tokenizer,
    accelerator: Accelerator,
    task_names: list[str],
    batch_size: int | None = None,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    piece_starts: Sequence[int] | None = None,
    show_progress: bool = False,
    across_processes: bool = True,
    on_sentences_tagged: Callable[[int], None] | None = None,
    return_marginals: bool = False,
) -> WindowPredictions:
    """
    Tags every window of `dataset` with the heads `task_names` (one encoder pass per batch); `return_marginals` adds
    each head's CRF marginals.

    The batches are those of `predict.py`'s feed (`window_batches`): windows of one padded shape, up to
    `batch_tokens` padded sub-tokens and at most `batch_size` windows (None: no cap), formed within each piece of the
    input. `piece_starts` are the `sentence_index` values that start a piece (None: one piece), as
    `hstl.inference.sharding.piece_ranges` cuts a file for the feed: with the same pieces, every batch holds the same
    windows padded alike as `predict.py`'s, which matters where a row's result depends on its batch mates (dynamic
    int8 quantization scales each batch's activations as a whole).

    The batches are formed alike whatever the number of processes; process `r` of `n` tags batches `r, r + n, ...`
    and every process gets all results back, in the batches' order (unless `across_processes` is False: this process
    tags all of `dataset` alone, as each process of a sharded `predict.py` does with its own sentences).
    `on_sentences_tagged(n)` is called after each of this process's batches with the number of sentences whose first
    window it held, for a progress bar.

    Returns:
        Per-window labels, metadata (and marginals), in the same order: the batches', then the windows' within them.
    """
    unwrapped = accelerator.unwrap_model(model)
    was_training = unwrapped.training
    unwrapped.eval()
    batches = window_batches(dataset, batch_tokens, batch_size, piece_starts)
    num_processes, process_index = (accelerator.num_processes, accelerator.process_index) if across_processes else (1, 0)
    own = range(process_index, len(batches), num_processes)
    model_columns = [column for column in dataset.column_names if column != "labels"]
    collate = functools.partial(collate_windows, HSTLDataCollator(tokenizer, pad_to_multiple_of=PAD_TO_MULTIPLE_OF))
    loader = DataLoader(dataset.select_columns(model_columns), batch_sampler=[batches[index] for index in own],
                        collate_fn=collate)
    tagged = []  # (batch index, metadata rows, labels per task, marginals per task) of this process's batches
    progress = tqdm(loader, desc="Predicting", disable=not (show_progress and accelerator.is_local_main_process))
    for batch_index, batch in zip(own, progress):
        inputs = {key: batch[key].to(accelerator.device) for key in MODEL_INPUT_KEYS if key in batch}
        output = unwrapped.tag(**inputs, tasks=task_names, return_marginals=return_marginals)
        if on_sentences_tagged is not None:
            on_sentences_tagged(int((batch["word_offset"] == 0).sum()))
        # shape: (batch, 4)
        metadata = torch.stack([batch[column] for column in METADATA_KEYS], dim=1).tolist()
        tagged.append((batch_index, metadata, [output.predictions[name].tolist() for name in task_names],
                       [output.marginals[name].tolist() for name in task_names] if return_marginals else []))
    if num_processes > 1:
        tagged = sorted(gather_object(tagged), key=lambda entry: entry[0])
    assert [entry[0] for entry in tagged] == list(range(len(batches))), "every batch tagged once, in order"
    result = WindowPredictions({name: [] for name in task_names}, [],
                               {name: [] for name in task_names} if return_marginals else None)
    for _, metadata, labels, marginals in tagged:
        result.metadata.extend(dict(zip(METADATA_KEYS, row)) for row in metadata)
        for name, rows in zip(task_names, labels):
            result.labels[name].extend(rows)
        for name, rows in zip(task_names, marginals):
            result.marginals[name].extend(rows)
    unwrapped.train(was_training)
    return result


def window_batches(dataset: Dataset | WindowRows, batch_tokens: int, batch_size: int | None = None,
                   piece_starts: Sequence[int] | None = None) -> list[list[int]]:
    """Window indices per batch, as `predict.py`'s feed batches them (`hstl.inference.feed.plan_batches`), within
    each piece (`piece_starts`: the `sentence_index` values that start one; None: one piece), pieces in order."""
    lengths = [len(ids) for ids in dataset["input_ids"]]
    word_counts = [len(starts) for starts in dataset["word_start_positions"]]
    pieces: dict[int, list[int]] = {}
    for index, sentence_index in enumerate(dataset["sentence_index"]):
        piece = bisect.bisect_right(piece_starts, sentence_index) - 1 if piece_starts else 0
        pieces.setdefault(piece, []).append(index)
    batches = []
    for piece in sorted(pieces):
        windows = pieces[piece]
        batches += [[windows[row] for row in rows] for rows in plan_batches(
            [lengths[index] for index in windows], [word_counts[index] for index in windows], batch_tokens,
            batch_size)]
    return batches


def collate_windows(collator: HSTLDataCollator, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """A batch of windows as the feed collates it: sub-tokens padded by `collator` (with `PAD_TO_MULTIPLE_OF`), word
    columns to the rounded-up word count."""
    return words_padded_alike(collator(list(rows)))


def predict_labels(
    model,
    dataset: Dataset | WindowRows,
    tokenizer,
    accelerator: Accelerator,
    task_names: list[str],
    num_words: Sequence[int],
    batch_size: int | None = None,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    piece_starts: Sequence[int] | None = None,
    show_progress: bool = False,
) -> dict[str, list[list[int]]]:
    """Task name -> label ids of every word of every sentence (sentence `i` has `num_words[i]` words), batched as
    `predict_windows` says."""
    windows = predict_windows(
        model, dataset, tokenizer, accelerator, task_names, batch_size=batch_size, batch_tokens=batch_tokens,
        piece_starts=piece_starts, show_progress=show_progress,
    )
    return {name: stitch_predictions(windows.labels[name], windows.metadata, num_words) for name in task_names}


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
        model, dataset, tokenizer, accelerator, task_names, batch_size=settings.batch_size,
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
