"""The tagging feed behind `predict.py`: reading, sentence splitting, tokenization and windowing run ahead of the model
in worker processes, the model tags on its device, and stitching, merging and writing run behind it in a thread, so
that the device waits for neither.

    pieces of the input: byte ranges of about `FeedSettings.piece_bytes`, cut where a unit starts
    (`hstl.inference.sharding.piece_ranges`)
      -> DataLoader workers (`num_workers`; 0: this process): read the piece's units, split them into sentences of
         words, window and tokenize them, sort the windows by length and cut them into batches of at most
         `batch_tokens` padded sub-tokens (pinned in memory when the device is a GPU)
      -> this thread: each batch to the device (non-blocking), one encoder pass and every head's Viterbi and
         marginals batched there (`HSTLModel.tag`); the results back to the CPU
      -> a writer thread: stitch windows into sentences, merge the heads' mentions, render, and write in chunks of
         `chunk_size` units (what the progress record and `--resume` count)

On the CPU (`tags_in_workers`) the workers do all of it but the writing (`tag_and_render`): each tags whole pieces
(pieces of `PIECE_BYTES_PER_BATCH_TOKEN` bytes per batch token), with the model it was forked with, one thread
each, and sends back their text, which this thread writes in input order: nothing but the writing waits on one
process, so the feed scales with the workers. The CRFs of all the batches of a piece run at once (`tag_batches`,
`HSTLModel.decode`), and rendering finds the mentions of all the piece's sentences from label-id tensors
(`mentions_hstl.collect_mentions_of_sentences`), only the mentions becoming Python objects.

The output does not depend on the number of processes, workers, the piece size, `batch_tokens` or `--batch_size`:
a window is padded to its own length rounded up to `PAD_TO_MULTIPLE_OF`, its words to their count rounded up alike,
and batched only with windows padded alike, so every tensor row of it has the same shape whatever its batch mates;
on the CPU a row's result then does not depend on the other rows (tests/test_predict.py compares windows bit for bit
and outputs byte for byte). On a GPU, a matrix product may take another kernel for another number of rows: there,
runs with different batch settings agree to rounding, and runs with the same settings (any number of processes or
workers: pieces are cut from the whole file the same way) to the byte.
"""

from __future__ import annotations

import functools
import gc
import os
import queue
import threading
from dataclasses import dataclass
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping

from entity_types_hstl import keep_entity_types
from windows_hstl import METADATA_KEYS, HSTLDataCollator, length_sorted_order

from ..errors import USER_ERRORS, PredictionInputError
from ..formats import FORMATS, InputFormat
from ..formats.common import FileRange
from .loading import WindowSettings, autocast_to

if TYPE_CHECKING:
    import torch  # imported where used: options are checked and the input counted before torch loads

PAD_TO_MULTIPLE_OF = 8
"""A window's padded length: its own length rounded up to a multiple of this (and batches hold one padded length)."""
DEFAULT_BATCH_TOKENS = 16384
"""`--batch_tokens` default: padded sub-tokens per batch (`benchmarks/feed_throughput.py --batch_tokens N` times
other sizes)."""
PIECE_BYTES_PER_BATCH_TOKEN = 8
"""A piece of the input holds about this many bytes per token of `batch_tokens` (two or three batches of text): enough
windows to sort into full batches of few padded lengths, few enough that every worker has its share to the end when
the workers tag whole pieces (16 cut the benchmark's input into 3 pieces, which two workers share 2 to 1, for about
8 % less CPU time; docs/benchmarks.md, "Tagging feed"). The same on every device, so that evaluation batches exactly
as predict.py does (dynamic int8 quantization scales per batch)."""
MIN_PIECE_BYTES = 256
MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "word_start_positions")
"""The collated columns the model reads; the window metadata stays on the CPU for stitching."""


def available_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_num_workers(num_processes: int = 1) -> int:
    """`--num_workers` default: the cores of the machine, shared among the processes of one run."""
    return max(1, available_cores() // max(1, num_processes))


@dataclass(frozen=True)
class FeedSettings:
    """How the feed cuts its work: tokens per batch, at most `max_windows` windows per batch (`--batch_size`; None:
    no limit but the tokens), and how many worker processes prepare batches (0: this process does)."""

    batch_tokens: int = DEFAULT_BATCH_TOKENS
    max_windows: int | None = None
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.batch_tokens < 1:
            raise PredictionInputError(f"--batch_tokens: expected a positive number of sub-tokens, got "
                                       f"{self.batch_tokens}")
        if self.num_workers < 0:
            raise PredictionInputError(f"--num_workers: expected 0 or more worker processes, got {self.num_workers}")

    @property
    def piece_bytes(self) -> int:
        return max(MIN_PIECE_BYTES, PIECE_BYTES_PER_BATCH_TOKEN * self.batch_tokens)


def padded_window_length(length: int) -> int:
    return -(-length // PAD_TO_MULTIPLE_OF) * PAD_TO_MULTIPLE_OF


def plan_batches(lengths: Sequence[int], word_counts: Sequence[int], batch_tokens: int,
                 max_windows: int | None = None) -> list[list[int]]:
    """Window indices per batch: longest first; a batch holds windows of one padded length and one padded word count
    (`padded_window_length` of each), at most `batch_tokens // padded length` of them (at least one) and at most
    `max_windows`."""
    shapes = [(padded_window_length(length), padded_window_length(count)) for length, count in zip(lengths, word_counts)]
    batches: list[list[int]] = []
    current_shape = None
    # Longest first, windows of one shape together (sorting by length alone would interleave the word counts).
    for index in sorted(length_sorted_order(lengths), key=lambda index: (-shapes[index][0], -shapes[index][1])):
        shape = shapes[index]
        rows = max(1, batch_tokens // shape[0])
        if max_windows is not None:
            rows = min(rows, max_windows)
        if not batches or shape != current_shape or len(batches[-1]) >= rows:
            batches.append([])
            current_shape = shape
        batches[-1].append(index)
    return batches


@dataclass
class PreparedPiece:
    """A piece of the input, ready for the model: its units, how many sentences each has, every sentence's word
    count (0 for a sentence without words, which has no window), and the batches of its windows' tensors."""

    units: list[Any]
    sentences_per_unit: list[int]
    num_words: list[int]
    batches: list[dict[str, torch.Tensor]]

    def pin_memory(self) -> PreparedPiece:
        """Called by the DataLoader's pinning thread when the device is a GPU: page-locked batches copy to the
        device without a staging copy, and without blocking this thread."""
        self.batches = [{key: tensor.pin_memory() for key, tensor in batch.items()} for batch in self.batches]
        return self


def prepare_units(units: list[Any], input_format: InputFormat, tokenizer, window: WindowSettings,
                  feed: FeedSettings) -> PreparedPiece:
    """Units -> sentences of words -> windows (`hstl.inference.tagging.build_task_dataset`) -> length-sorted batches
    (`tagging.window_batches`, as evaluation batches them) of tensors collated by `tagging.collate_windows`."""
    from .tagging import build_task_dataset, collate_windows, window_batches

    sentences_of_units = [input_format.unit_sentences(unit) for unit in units]
    sentences = [words for sentences in sentences_of_units for words in sentences]
    non_empty = [words for words in sentences if words]
    batches: list[dict[str, torch.Tensor]] = []
    if non_empty:
        windows = build_task_dataset(tokenizer, non_empty, None, 0, window.max_length, window.overlap)
        collator = HSTLDataCollator(tokenizer, pad_to_multiple_of=PAD_TO_MULTIPLE_OF)
        batches = [collate_windows(collator, [windows[index] for index in rows])
                   for rows in window_batches(windows, feed.batch_tokens, feed.max_windows)]
    return PreparedPiece(units, [len(sentences) for sentences in sentences_of_units],
                         [len(words) for words in sentences], batches)


def words_padded_alike(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch with its word columns padded to its windows' word count rounded up to `PAD_TO_MULTIPLE_OF` (one for
    the whole batch, `plan_batches`): the family layers, heads and CRFs then also see a shape that depends on the
    window alone, not on its longest batch mate (a matrix product may round a row differently when the number of rows
    changes its blocking)."""
    import torch

    positions = batch["word_start_positions"]
    extra = padded_window_length(positions.shape[1]) - positions.shape[1]
    batch["word_start_positions"] = torch.nn.functional.pad(positions, (0, extra), value=-1)
    return batch


def read_and_prepare(item: tuple[FileRange, int], format_name: str, tokenizer, window: WindowSettings,
                      feed: FeedSettings) -> PreparedPiece:
    """A worker's job: the units of a piece after its first `skip` (done by an interrupted run), prepared."""
    piece, skip = item
    units = list(FORMATS[format_name].read_units(piece))[skip:]
    return prepare_units(units, FORMATS[format_name], tokenizer, window, feed)


@dataclass
class _Failed:
    """A user error met in a worker, sent back whole: the DataLoader would re-raise it with its traceback in the
    message, and the command prints one line."""

    error: BaseException


class _Jobs:
    """A map-style dataset whose indices are the jobs themselves, so that the DataLoader's sampler (iterated in this
    process, lazily) hands each worker its job, and results come back in the jobs' order."""

    def __init__(self, function: Callable[[Any], Any]) -> None:
        self.function = function

    def __getitem__(self, job: Any) -> Any:
        try:
            return self.function(job)
        except USER_ERRORS as error:
            return _Failed(error)


def _as_is(result: Any) -> Any:
    return result


def in_workers(function: Callable[[Any], Any], jobs: Iterable[Any], num_workers: int,
               pin_memory: bool = False) -> Iterator[Any]:
    """`function(job)` for each job, in order, computed ahead by `num_workers` DataLoader worker processes (0: in
    this process, when asked for); a user error raised by a job is raised here, as itself."""
    from torch.utils.data import DataLoader

    loader = DataLoader(_Jobs(function), sampler=jobs, batch_size=None, collate_fn=_as_is, num_workers=num_workers,
                        pin_memory=pin_memory, prefetch_factor=2 if num_workers else None)
    # The workers are forked with this process's objects frozen out of the garbage collector's reach: their
    # collections then leave the inherited heap alone instead of touching (so copying) every page of it.
    gc.freeze()
    try:
        results = iter(loader)
    finally:
        gc.unfreeze()
    for result in results:
        if isinstance(result, _Failed):
            raise result.error
        yield result


def whole_piece_workers(num_jobs: int, num_workers: int) -> int:
    """Worker processes for tagging `num_jobs` whole pieces on the CPU with up to `num_workers`: none for a single
    piece, which this process then tags with all its torch threads (a forked worker runs one: OpenMP cannot start
    more threads safely after a fork), and never more than the pieces."""
    return min(num_workers, num_jobs) if num_jobs > 1 else 0


# ---------------------------------------------------------------------------------------------------------------------
# The device: one pass per batch


def tag_batches(model, batches: Sequence[Mapping[str, torch.Tensor]], tasks: Sequence[str], device: torch.device,
                dtype: str, mention_marginals_only: bool = False,
                ) -> list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]:
    """Per batch, `({task: label ids (windows, words)}, {task: marginals (windows, words, labels)})` on the CPU; on a
    GPU the copies back are queued without waiting (`BatchResults.wait` before reading them).

    With `mention_marginals_only`, a head's marginals are computed only for the windows of the sentences in which
    it labels some word other than O (in any of their windows), and are 0 elsewhere: a mention's confidence reads
    the marginals of its own words and of the next word of its sentence, nothing else does, and a row's marginals do
    not depend on its batch mates, so the output is the same. The labels are then decoded first, for the whole
    piece, since a sentence's windows may lie in other batches."""
    import torch

    if not batches:
        return []
    unwrapped = getattr(model, "module", model)
    non_blocking = device.type == "cuda"
    emissions, word_masks = [], []
    with torch.inference_mode(), autocast_to(dtype, device.type):
        for batch in batches:
            inputs = {key: batch[key].to(device, non_blocking=non_blocking) for key in MODEL_INPUT_KEYS if key in batch}
            output = unwrapped.tag(**inputs, tasks=list(tasks), decode=False)
            emissions.append(output.emissions)
            word_masks.append(output.word_mask)
        # The CRFs of several batches at once (`HSTLModel.decode`, a row's result does not depend on its neighbours)
        groups = [_Group.of(indices, emissions, word_masks) for indices in crf_groups(device.type, word_masks)]
        predictions: list = [None] * len(batches)
        marginals: list = [None] * len(batches)
        for group in groups:
            labels, group_marginals = unwrapped.decode(group.emissions, group.word_mask,
                                                       return_marginals=not mention_marginals_only)
            group.spread(labels, predictions)
            if group_marginals is not None:
                group.spread(group_marginals, marginals)
        if mention_marginals_only:
            needed = _rows_in_sentences_with_mentions(unwrapped.config, batches, predictions, tasks)
            for group in groups:
                group_needed = {name: torch.cat([needed[index][name] for index in group.indices]) for name in tasks}
                group.spread(_marginals_of_rows(unwrapped, group.emissions, group.word_mask, group_needed, tasks),
                             marginals)
    return [({name: values.to("cpu", non_blocking=non_blocking) for name, values in batch_predictions.items()},
             {name: values.to("cpu", non_blocking=non_blocking) for name, values in batch_marginals.items()})
            for batch_predictions, batch_marginals in zip(predictions, marginals)]


@dataclass
class _Group:
    """Batches whose CRFs run at once: their emissions and word masks joined, padded to the widest of them."""

    indices: list[int]
    word_masks: list[torch.Tensor]
    word_mask: torch.Tensor  # shape: (rows of the group, most words)
    emissions: dict[str, torch.Tensor]  # {task: (rows of the group, most words, labels)}

    @classmethod
    def of(cls, indices: list[int], emissions: Sequence[Mapping[str, torch.Tensor]],
           word_masks: Sequence[torch.Tensor]) -> "_Group":
        group_masks = [word_masks[index] for index in indices]
        return cls(indices, group_masks, _padded_and_joined(group_masks),
                   {name: _padded_and_joined([emissions[index][name] for index in indices])
                    for name in emissions[indices[0]]})

    def spread(self, values: Mapping[str, torch.Tensor], per_batch: list) -> None:
        """`per_batch[index]`, for each batch of the group: `{task: its rows and words of the group's values}`
        (views)."""
        rows = [mask.shape[0] for mask in self.word_masks]
        split = {name: head_values.split(rows) for name, head_values in values.items()}
        for position, (index, mask) in enumerate(zip(self.indices, self.word_masks)):
            per_batch[index] = {name: split[name][position][:, : mask.shape[1]] for name in values}


def _padded_and_joined(values: Sequence[torch.Tensor]) -> torch.Tensor:
    """Batches of `(rows, words, ...)` values as one `(all rows, most words, ...)` tensor, zero (False) past each
    batch's own words (a batch of the widest is not padded, so a group of one width is only joined)."""
    import torch

    width = max(batch_values.shape[1] for batch_values in values)
    padding = [0, 0] * (values[0].dim() - 2)
    return torch.cat([batch_values if batch_values.shape[1] == width
                      else torch.nn.functional.pad(batch_values, [*padding, 0, width - batch_values.shape[1]])
                      for batch_values in values])


def crf_groups(device_type: str, word_masks: Sequence[torch.Tensor]) -> list[list[int]]:
    """The batches (indices) whose CRFs `tag_batches` runs at once, each group padded to its widest batch. On the CPU
    each step of the loops over word positions works on the rows still inside their sentence, so all of a piece's
    batches form one group, at the cost of their real words. Elsewhere the scans over positions cost rows x padded
    words (and padding words can move a marginal's last digits), so a group is the batches of one word width."""
    if device_type == "cpu":
        return [list(range(len(word_masks)))]
    by_width: dict[int, list[int]] = {}
    for index, mask in enumerate(word_masks):
        by_width.setdefault(mask.shape[1], []).append(index)
    return list(by_width.values())


def _rows_in_sentences_with_mentions(config, batches: Sequence[Mapping[str, torch.Tensor]],
                                     predictions: Sequence[Mapping[str, torch.Tensor]],
                                     tasks: Sequence[str]) -> list[dict[str, torch.Tensor]]:
    """Per batch, `{task: (windows,) bool}`: the windows of the sentences in which the head labels a word other than
    O in some window (label ids on the CPU; `batch["sentence_index"]` numbers the piece's sentences)."""
    import torch

    sentence_ids = [batch["sentence_index"] for batch in batches]
    num_sentences = int(max(int(ids.max()) for ids in sentence_ids)) + 1
    needed: list[dict[str, torch.Tensor]] = [{} for _ in batches]
    for name in tasks:
        outside_id = list(config.task(name)["labels"]).index("O")
        with_mention = torch.zeros(num_sentences, dtype=torch.bool)
        for ids, batch_predictions in zip(sentence_ids, predictions):
            labels = batch_predictions[name]
            with_mention[ids[((labels != outside_id) & (labels >= 0)).any(dim=1)]] = True
        for batch_needed, ids in zip(needed, sentence_ids):
            batch_needed[name] = with_mention[ids]
    return needed


def _marginals_of_rows(model, emissions: Mapping[str, torch.Tensor], word_mask: torch.Tensor,
                       needed: Mapping[str, torch.Tensor], tasks: Sequence[str]) -> dict[str, torch.Tensor]:
    """`{task: (windows, words, labels)}` float32 marginals: the model's (`HSTLModel.marginals`, the needed rows of
    all heads at once) where `needed`, 0 elsewhere."""
    import torch

    rows_of_heads = {name: needed[name].nonzero().squeeze(1) for name in tasks}
    heads = [name for name in tasks if len(rows_of_heads[name])]
    computed = {}
    if heads:
        computed = model.marginals({name: emissions[name][rows_of_heads[name]] for name in heads},
                                   {name: word_mask[rows_of_heads[name]] for name in heads})
    marginals = {}
    for name in tasks:
        marginals[name] = torch.zeros(*word_mask.shape, emissions[name].shape[-1], dtype=torch.float32,
                                      device=word_mask.device)
        if name in computed:
            marginals[name][rows_of_heads[name]] = computed[name]
    return marginals


@dataclass
class BatchResults:
    """What the device made of a piece's batches, and a way to wait until its copies to the CPU are done."""

    piece: PreparedPiece
    outputs: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]
    copied: Any = None  # a CUDA event recorded after the copies; None on the CPU

    def wait(self) -> None:
        if self.copied is not None:
            self.copied.synchronize()


def tag_piece(model, piece: PreparedPiece, tasks: Sequence[str], device: torch.device, dtype: str) -> BatchResults:
    import torch

    # On the CPU the marginals only of the sentences with mentions (`tag_batches`); on a GPU, where choosing the
    # rows would wait for the labels, all of them.
    outputs = tag_batches(model, piece.batches, tasks, device, dtype, mention_marginals_only=device.type == "cpu")
    copied = None
    if device.type == "cuda":
        copied = torch.cuda.Event()
        copied.record()
    return BatchResults(piece, outputs, copied)


# ---------------------------------------------------------------------------------------------------------------------
# Behind the device: stitch, merge, render


@dataclass(frozen=True)
class Renderer:
    """What turning a piece's batch results into output text needs besides them."""

    config: Any
    input_format: InputFormat
    tasks: Sequence[str]
    merge: str
    entity_type_of: Mapping[str, Mapping[str, str]] | None = None
    """The model's `config.entity_types` (None: each label type is its own shared type)."""
    entity_types: Sequence[str] | None = None
    """Shared entity types to keep (`--entity_types`); None keeps all."""

    def __call__(self, results: BatchResults) -> list[str]:
        """The rendered text of each unit of the piece, in order."""
        results.wait()
        piece = results.piece
        sentences, marginals = self.sentences(results)
        rendered, first = [], 0
        for unit, count in zip(piece.units, piece.sentences_per_unit):
            last = first + count
            rendered.append(self.input_format.render_unit(unit, sentences[first:last], self.merge,
                                                          marginals[first:last], self.entity_type_of))
            first = last
        return rendered

    def sentences(self, results: BatchResults) -> tuple[list[SentenceLabels], list[dict[str, _WordMarginals]]]:
        """Per sentence of the piece, its labels under every head with its mentions (`SentenceLabels`) and
        `{task: word marginals}`. The windows are stitched by one index for all heads
        (`windows_hstl.stitched_word_order`), the mentions of all sentences found at once from the label ids
        (`mentions_hstl.collect_mentions_of_sentences`); label names and `{label: probability}` rows are built only
        for what is read. With `entity_types`, labels of other shared types are O before the mentions are found
        (`entity_types_hstl.keep_entity_types`), so that a mention of a type left out never hides one asked for."""
        import torch

        from mentions_hstl import collect_mentions_of_sentences
        from windows_hstl import stitched_word_order

        piece = results.piece
        num_words = piece.num_words
        label_ids: dict[str, list[torch.Tensor]] = {name: [] for name in self.tasks}
        head_marginals: dict[str, list[torch.Tensor]] = {name: [] for name in self.tasks}
        counts, metadata = [], []
        for batch, (predictions, batch_marginals) in zip(piece.batches, results.outputs):
            real_words = batch["word_start_positions"] >= 0  # shape: (batch, words), real words left-aligned
            counts.append(real_words.sum(dim=1))
            metadata.append(torch.stack([batch[key] for key in METADATA_KEYS], dim=1))  # shape: (batch, 4)
            for name in self.tasks:
                label_ids[name].append(predictions[name][real_words])  # shape: (words of the batch,)
                head_marginals[name].append(batch_marginals[name][real_words])  # shape: (words of the batch, labels)
        non_empty = [count for count in num_words if count]
        order = stitched_word_order(torch.cat(counts), torch.cat(metadata), non_empty) if counts else None
        labels_of_heads, ids_of_heads, marginals_of_heads = {}, {}, {}
        for name in self.tasks:
            labels = list(self.config.task(name)["labels"])
            if self.entity_types is not None:
                types = (self.entity_type_of or {}).get(name, {})
                labels = keep_entity_types(labels, types, self.entity_types)
            labels_of_heads[name] = labels
            if order is not None:
                ids_of_heads[name] = torch.cat(label_ids[name])[order]
                marginals_of_heads[name] = torch.cat(head_marginals[name]).float()[order]
            else:
                ids_of_heads[name] = torch.zeros(0, dtype=torch.long)
                marginals_of_heads[name] = torch.zeros(0, len(labels))
        mentions = collect_mentions_of_sentences(labels_of_heads, ids_of_heads, marginals_of_heads, num_words,
                                                 self.entity_type_of)
        names = _LabelNames(labels_of_heads, ids_of_heads)
        head_labels = {name: self.config.task(name)["labels"] for name in self.tasks}
        sentences, marginals, first = [], [], 0
        for count, sentence_mentions in zip(num_words, mentions):
            words = range(first, first + count)
            sentences.append(SentenceLabels(names, words, sentence_mentions))
            marginals.append({name: _WordMarginals(head_labels[name], marginals_of_heads[name], words)
                              for name in self.tasks})
            first += count
        return sentences, marginals


class _LabelNames:
    """Each head's label names of a piece's words, in sentence order, listed at the first read: rendering mentions
    reads none (only CoNLL output reads labels)."""

    def __init__(self, labels_of_heads: Mapping[str, Sequence[str]], ids_of_heads: Mapping[str, torch.Tensor]) -> None:
        self.tasks = list(labels_of_heads)
        self._labels, self._ids, self._names = labels_of_heads, ids_of_heads, {}

    def of(self, task: str) -> list[str]:
        if task not in self._names:
            self._names[task] = [self._labels[task][label_id] for label_id in self._ids[task].tolist()]
        return self._names[task]


class SentenceLabels(Mapping):
    """One sentence's `{task: IOB2 labels}`, heads in order (each list built when read), with its heads' `mentions`
    already collected and scored (`mentions_hstl.collect_mentions`' result, which
    `hstl.inference.merging.merge_mentions` then uses)."""

    def __init__(self, names: _LabelNames, words: range, mentions: list) -> None:
        self._names, self._words, self.mentions = names, words, mentions

    def __getitem__(self, task: str) -> list[str]:
        if task not in self._names.tasks:
            raise KeyError(task)
        return self._names.of(task)[self._words.start:self._words.stop]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names.tasks)

    def __len__(self) -> int:
        return len(self._names.tasks)


class _WordMarginals(Sequence):
    """One sentence's word marginals under one head as `mentions_hstl.word_marginals` gives them, `{label:
    probability}` per word, each built only when read: a mention's confidence reads its own words and the next, and
    most words are in no mention."""

    def __init__(self, labels: Sequence[str], rows, words: Sequence[int]) -> None:
        self._labels, self._rows, self._words = labels, rows, words

    def __len__(self) -> int:
        return len(self._words)

    def __getitem__(self, position):
        if isinstance(position, slice):
            return [self[index] for index in range(*position.indices(len(self)))]
        return dict(zip(self._labels, self._rows[self._words[position]].tolist()))


class ChunkWriter:
    """The writer thread: renders what the device made and writes it in chunks of `chunk_size` units through
    `write(text, units)`, the units of a chunk joined by `separator`; stops (`stopped`) before the chunk after
    `stop_after_chunks` when there is one. `put` blocks while two pieces wait, so memory stays bounded."""

    def __init__(self, render: Callable[[BatchResults], list[str]], write: Callable[[str, int], None],
                 chunk_size: int, separator: str, stop_after_chunks: int | None = None,
                 on_units_written: Callable[[int], None] | None = None) -> None:
        self._render, self._write, self._chunk_size, self._separator = render, write, chunk_size, separator
        self._stop_after_chunks, self._on_units_written = stop_after_chunks, on_units_written
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._pending: list[str] = []
        self.chunks_written = 0
        self.stopped = False
        self.error: BaseException | None = None
        # Started by the first `put`, once the DataLoader has forked its workers: a process forked while another
        # thread runs may inherit a lock that thread held.
        self._thread = threading.Thread(target=self._run, name="hstl-writer", daemon=True)

    def put(self, results: BatchResults) -> bool:
        """Hands a piece's results to the thread; False once it stopped (or failed): feed it no more."""
        if not self._thread.is_alive() and self._thread.ident is None:
            self._thread.start()
        while not (self.stopped or self.error):
            try:
                self._queue.put(results, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def finish(self) -> None:
        """Writes what is left (unless stopped), waits for the thread and raises what it met."""
        if self._thread.ident is None:  # nothing was put
            self._thread.start()
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.1)
                break
            except queue.Full:
                continue
        self._thread.join()
        if self.error is not None:
            raise self.error

    def add(self, texts: Sequence[str]) -> bool:
        """Adds rendered units, writing each chunk once full; False once stopped (`stop_after_chunks`). Called by
        the thread, or directly by the feeding thread when the workers render (and no thread is started before
        `finish`)."""
        for text in texts:
            self._pending.append(text)
            if len(self._pending) == self._chunk_size and not self._flush():
                return False
        return True

    def _run(self) -> None:
        try:
            while (results := self._queue.get()) is not None:
                if not self.add(self._render(results)):
                    return
            if self._pending:
                self._flush()
        except BaseException as error:  # noqa: BLE001 (raised in the feeding thread by `finish`)
            self.error = error

    def _flush(self) -> bool:
        if self._stop_after_chunks is not None and self.chunks_written >= self._stop_after_chunks:
            self.stopped = True
            return False
        units = len(self._pending)
        self._write(self._separator.join(self._pending), units)
        self._pending = []
        self.chunks_written += 1
        if self._on_units_written is not None:
            self._on_units_written(units)
        return True


def run_feed(model, tokenizer, input_format: InputFormat, jobs: Iterable[tuple[FileRange, int]], window: WindowSettings,
             feed: FeedSettings, device: torch.device, dtype: str, render: Renderer, writer: ChunkWriter) -> bool:
    """Tags the units of `jobs` ((piece, units of it to skip), in input order) through the workers, the device and
    `writer`; False when the writer stopped early (`stop_after_chunks`)."""
    prepare = functools.partial(read_and_prepare, format_name=input_format.name, tokenizer=tokenizer,
                                window=window, feed=feed)
    try:
        if tags_in_workers(device):
            whole = functools.partial(tag_and_render, prepare=prepare, model=model, device=device, dtype=dtype,
                                      render=render)
            jobs = list(jobs)
            for texts in in_workers(whole, jobs, whole_piece_workers(len(jobs), feed.num_workers)):
                if not writer.add(texts):
                    break
        else:
            for piece in in_workers(prepare, jobs, feed.num_workers, pin_memory=device.type == "cuda"):
                if not writer.put(tag_piece(model, piece, render.tasks, device, dtype)):
                    break
    finally:
        writer.finish()
    return not writer.stopped


def tags_in_workers(device: torch.device) -> bool:
    """Whether the workers tag whole pieces (the CPU) rather than prepare batches for this process's device."""
    return device.type == "cpu"


def tag_and_render(item: tuple[FileRange, int], prepare: Callable[[tuple[FileRange, int]], PreparedPiece], model,
                   device: torch.device, dtype: str, render: Renderer) -> list[str]:
    """A worker's job on the CPU: a piece read and prepared, tagged by the model (encoder and CRFs) and rendered, the
    text of each of its units in order. The worker was forked with the model in its memory, so nothing of the model
    is copied; the pieces and their texts are all that cross between processes."""
    return render(tag_piece(model, prepare(item), render.tasks, device, dtype))
