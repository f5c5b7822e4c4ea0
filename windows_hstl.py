# Copyright 2026 The HSTL developers. Licensed under the Apache License, Version 2.0.
"""Words to sub-tokens, sentences to overlapping encoder windows (`encode_sentences`), windows to padded batches
(`HSTLDataCollator`) and window predictions back to sentences (`stitch_predictions`, `stitch_words`).

Hub remote code, copied into every model folder with its `*_hstl.py` siblings. Standard library and `labels_hstl` at
module level; torch only inside the collator, so that reading text never pays for torch.

HSTL labels words, not sub-tokens: the model reads each word at its first sub-token (`word_start_positions`) and runs
the CRF over words. Every input word gets a position: a word the tokenizer turns into nothing (a zero-width space, a
lone control character) is given `<unk>`, and a sentence longer than `max_length` is cut into overlapping windows,
never truncated. Each word is *owned* by exactly one window, the one that sees it with context on both sides;
`stitch_predictions` puts a sentence back together from the owned parts.

Works with any fast Hugging Face tokenizer, whatever its padding side and special-token layout: XLNet
(`words <sep> <cls>`, left padding) and BERT (`[CLS] words [SEP]`, right padding) are tested.

Row layout produced by `encode_sentences` (one row per window, unpadded; lists of ints):
    input_ids             prefix special tokens + window sub-tokens + suffix special tokens
    token_type_ids        the tokenizer's segment ids for one sequence (only if it is one of its model inputs)
    word_start_positions  index in input_ids of each window word's first sub-token
    labels                label id of each window word (only when labels are given)
    task_ids, sentence_index, word_offset, owned_start, owned_end   one int each (see `HSTLDataCollator`)
"""

from __future__ import annotations

import array
import bisect
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# A model folder loads these files as the package `transformers_modules.<folder>` (relative imports); the installed
# package imports them as top-level modules. transformers' import check skips `try` blocks.
try:
    from .labels_hstl import PAD_LABEL_ID
except ImportError:
    from labels_hstl import PAD_LABEL_ID


if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase


DEFAULT_MAX_LENGTH = 128
"""Sub-tokens per encoder window, special tokens included, when neither a run config nor a model config says."""

DEFAULT_OVERLAP = 16
"""Sub-tokens of context shared by consecutive windows of a long sentence, by default."""


def check_window_size(max_length: Any, overlap: Any, names: tuple[str, str] = ("max_length", "overlap")) -> None:
    """The one rule for window settings, wherever they come from (a run config's `training.max_length` and
    `training.window_overlap`, `HSTLConfig.window_max_length` and `window_overlap`, `predict.py --max_length
    --overlap`): `max_length` an int >= 2, and `0 <= overlap < max_length // 2`, so that consecutive windows share
    less than half of either. `names` are the two settings as the caller's user spells them.

    Raises:
        ValueError: naming the setting, what was expected and what came.
    """
    max_length_name, overlap_name = names
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"{max_length_name}: expected an int >= 2, got {max_length!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < max_length // 2:
        raise ValueError(f"{overlap_name}: expected an int with 0 <= {overlap_name} < {max_length_name} // 2 = "
                         f"{max_length // 2}, got {overlap!r}")


PADDING_WORD_POSITION = -1
"""`word_start_positions` entry of padding words."""

METADATA_KEYS = ("sentence_index", "word_offset", "owned_start", "owned_end")
"""Per-window integers that `stitch_predictions` needs to put sentences back together."""

_PROBE_WORDS = ("a", "x", "0", "the")
"""Words used to find where a tokenizer puts its special tokens; one of them yields a sub-token in any vocabulary."""

_WORDS_PER_SEQUENCE = 256
"""Distinct words encoded together in one pre-split sequence by `subtokens_per_word`."""


@dataclass(frozen=True)
class Window:
    """A run of a sentence's words fed to the encoder together, and the words it provides predictions for.

    All indices are sentence word indices; `end` and `owned_end` are exclusive.
    `start <= owned_start < owned_end <= end`; words outside `[owned_start, owned_end)` are context only.
    """

    start: int
    end: int
    owned_start: int
    owned_end: int


@dataclass(frozen=True)
class SpecialTokensTemplate:
    """Where a tokenizer puts its special tokens around a single sequence, and their segment ids.

    Transformers 5 fast tokenizers have no `build_inputs_with_special_tokens`; this is read off the tokenizer's own
    post-processor output by `special_tokens_template`, so it matches `tokenizer(words, is_split_into_words=True)`.
    """

    prefix_ids: tuple[int, ...]
    suffix_ids: tuple[int, ...]
    prefix_type_ids: tuple[int, ...]
    sequence_type_id: int
    suffix_type_ids: tuple[int, ...]

    @property
    def num_special_tokens(self) -> int:
        """Number of special tokens added around one sequence."""
        return len(self.prefix_ids) + len(self.suffix_ids)

    def input_ids(self, content_ids: list[int]) -> list[int]:
        """`content_ids` wrapped in the special tokens."""
        return [*self.prefix_ids, *content_ids, *self.suffix_ids]

    def token_type_ids(self, num_content_ids: int) -> list[int]:
        """Segment ids of a wrapped sequence holding `num_content_ids` sub-tokens."""
        return [*self.prefix_type_ids, *([self.sequence_type_id] * num_content_ids), *self.suffix_type_ids]


def _require_fast(tokenizer: PreTrainedTokenizerBase) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"tokenizer: expected a fast tokenizer (word_ids() is needed), got {type(tokenizer).__name__}")


def special_tokens_template(tokenizer: PreTrainedTokenizerBase) -> SpecialTokensTemplate:
    """Read the tokenizer's single-sequence special-token layout from one encoding of a probe word.

    Tokens with no word id are special; those before the first word token form the prefix, those after the last
    form the suffix.
    """
    _require_fast(tokenizer)
    for probe in _PROBE_WORDS:
        encoding = tokenizer([probe], is_split_into_words=True, add_special_tokens=True, return_token_type_ids=True)
        word_ids = encoding.word_ids()
        word_token_indices = [index for index, word_id in enumerate(word_ids) if word_id is not None]
        if word_token_indices:
            first, last = word_token_indices[0], word_token_indices[-1]
            input_ids, type_ids = encoding["input_ids"], encoding["token_type_ids"]
            return SpecialTokensTemplate(
                prefix_ids=tuple(input_ids[:first]),
                suffix_ids=tuple(input_ids[last + 1 :]),
                prefix_type_ids=tuple(type_ids[:first]),
                sequence_type_id=type_ids[first],
                suffix_type_ids=tuple(type_ids[last + 1 :]),
            )
    raise ValueError(f"tokenizer: expected one of the words {_PROBE_WORDS} to yield a sub-token, got none for any")


def _raise_for_non_string_word(sentences: Sequence[Sequence[Any]]) -> None:
    """Name the first word that is not a string (called only once something went wrong)."""
    for sentence_index, words in enumerate(sentences):
        if isinstance(words, str):
            raise TypeError(f"sentences[{sentence_index}]: expected a list of words, got a string {words[:40]!r}")
        for word_index, word in enumerate(words):
            if not isinstance(word, str):
                where = f"sentences[{sentence_index}][{word_index}]"
                raise TypeError(f"{where}: expected a string, got {type(word).__name__}")


def subtokens_per_word(tokenizer: PreTrainedTokenizerBase, sentences: Sequence[Sequence[str]]) -> list[list[list[int]]]:
    """Sub-token ids of every word of every sentence, without special tokens.

    With `is_split_into_words=True`, tokenizers encodes each word on its own (normalizer, pre-tokenizer and model run
    per word), so a word's sub-tokens do not depend on its neighbours. We therefore encode each distinct word once, in
    one batched call (several words per pre-split sequence, so that per-sequence overhead stays small): the same ids
    as encoding every sentence, and 5-10x faster on corpora, where words repeat.

    Args:
        tokenizer: a fast tokenizer.
        sentences: sentences as lists of words.

    Returns:
        `pieces[s][w]`: the sub-token ids of word `w` of sentence `s`, never empty: a word that yields no sub-token
        (e.g. "\\u200b") gets `[tokenizer.unk_token_id]` so that it still has a position. Occurrences of the same
        word share one list: treat them as read-only.
    """
    _require_fast(tokenizer)
    try:
        distinct_words = list(dict.fromkeys(itertools.chain.from_iterable(sentences)))
    except TypeError:  # an unhashable word
        _raise_for_non_string_word(sentences)
        raise
    if not all(isinstance(word, str) for word in distinct_words) or any(isinstance(words, str) for words in sentences):
        _raise_for_non_string_word(sentences)
    if not distinct_words:
        return [[] for _ in sentences]
    if tokenizer.unk_token_id is None:
        raise ValueError(
            "tokenizer: expected an unk token for words that yield no sub-token, "
            f"got none in {type(tokenizer).__name__}"
        )
    chunks = [
        distinct_words[chunk_start : chunk_start + _WORDS_PER_SEQUENCE]
        for chunk_start in range(0, len(distinct_words), _WORDS_PER_SEQUENCE)
    ]
    encodings = tokenizer(
        chunks,
        is_split_into_words=True,
        add_special_tokens=False,
        padding=False,  # padding/truncation=False also switch off any saved in tokenizer.json
        truncation=False,
        return_attention_mask=False,
        return_token_type_ids=False,
        verbose=False,  # a chunk is no model input: no "longer than model_max_length" warning
    ).encodings
    pieces_by_distinct_word: list[list[int]] = [[] for _ in distinct_words]
    for chunk_index, encoding in enumerate(encodings):
        chunk_start = chunk_index * _WORDS_PER_SEQUENCE
        for token_id, word_id in zip(encoding.ids, encoding.word_ids):
            if word_id is not None:
                pieces_by_distinct_word[chunk_start + word_id].append(token_id)
    unk_pieces = [tokenizer.unk_token_id]
    pieces_of_word = {word: pieces or unk_pieces for word, pieces in zip(distinct_words, pieces_by_distinct_word)}
    return [[pieces_of_word[word] for word in words] for words in sentences]


def _check_window_arguments(word_lengths: Sequence[int], max_subtokens: int, overlap_subtokens: int) -> None:
    if max_subtokens < 1:
        raise ValueError(f"max_subtokens: expected >= 1, got {max_subtokens}")
    if not 0 <= overlap_subtokens < max_subtokens:
        raise ValueError(
            f"overlap_subtokens: expected 0 <= overlap < max_subtokens = {max_subtokens}, got {overlap_subtokens}"
        )
    if any(length < 1 for length in word_lengths):
        first_bad = next(index for index, length in enumerate(word_lengths) if length < 1)
        raise ValueError(f"word_lengths[{first_bad}]: expected >= 1 sub-token per word, got {word_lengths[first_bad]}")


def _furthest_end(cumulative: list[int], start: int, budget: int) -> int:
    """Largest `end` with words `[start, end)` within `budget` sub-tokens, but at least `start + 1`.

    `cumulative[i]` is the number of sub-tokens before word i (strictly increasing since every word has >= 1).
    """
    return max(start + 1, bisect.bisect_right(cumulative, cumulative[start] + budget) - 1)


def _earliest_start(cumulative: list[int], end: int, budget: int) -> int:
    """Smallest `start <= end` with words `[start, end)` within `budget` sub-tokens."""
    return bisect.bisect_left(cumulative, cumulative[end] - budget, 0, end)


def plan_windows(word_lengths: Sequence[int], max_subtokens: int, overlap_subtokens: int) -> list[Window]:
    """Cut a sentence into windows of at most `max_subtokens` sub-tokens that overlap by about `overlap_subtokens`.

    Greedy, left to right: a window takes as many words as fit. The next one starts so that the two share the last
    words of this one worth at most `overlap_subtokens` sub-tokens (fewer if the next window could not otherwise take
    a new word); ownership switches in the middle of that shared run, so owned words have context on both sides.

    A word longer than `max_subtokens` gets a window of its own, and `encode_sentences` cuts its sub-tokens to the
    budget; the word is still read at its first sub-token, so nothing is lost but the tail of that one word.

    Args:
        word_lengths: number of sub-tokens of each word of the sentence (each >= 1).
        max_subtokens: sub-token budget of a window, special tokens excluded.
        overlap_subtokens: sub-tokens of context shared by consecutive windows, `0 <= overlap < max_subtokens`.

    Returns:
        Windows in sentence order, with strictly increasing starts and ends; their owned ranges partition
        `range(len(word_lengths))`. Empty for an empty sentence.
    """
    _check_window_arguments(word_lengths, max_subtokens, overlap_subtokens)
    # cumulative[i]: sub-tokens before word i
    cumulative = list(itertools.accumulate(word_lengths, initial=0))
    num_words = len(word_lengths)
    if num_words == 0:
        return []
    if cumulative[-1] <= max_subtokens:  # most sentences: one window, no search
        return [Window(0, num_words, 0, num_words)]
    windows = []
    start = owned_start = 0
    while True:
        end = _furthest_end(cumulative, start, max_subtokens)
        assert end > owned_start, "a window must contain the first word it owns"
        if end == num_words:
            windows.append(Window(start, end, owned_start, end))
            return windows
        if cumulative[end + 1] - cumulative[end] > max_subtokens:
            next_start = end  # word `end` alone exceeds the budget: it gets a window of its own, without context
        else:
            next_start = max(
                owned_start + 1,  # this window owns at least one word, so the loop advances
                _earliest_start(cumulative, end, overlap_subtokens),
                _earliest_start(cumulative, end + 1, max_subtokens),  # the next window must reach word `end`
            )
        split = next_start + (end - next_start) // 2
        windows.append(Window(start, end, owned_start, split))
        start, owned_start = next_start, split


def _label_ids_for_window(sentence_label_ids: Sequence[int], window: Window) -> list[int]:
    return [int(label_id) for label_id in sentence_label_ids[window.start : window.end]]


def _encode_window(
    word_pieces: list[list[int]], cumulative: list[int], window: Window, budget: int, template: SpecialTokensTemplate
) -> tuple[list[int], list[int]]:
    """(input_ids with special tokens, position of each window word's first sub-token in them).

    `cumulative[i]` is the number of sub-tokens of the sentence before word i.
    """
    content_ids = list(itertools.chain.from_iterable(word_pieces[window.start : window.end]))
    if len(content_ids) > budget:
        assert window.end - window.start == 1, "only a lone over-long word may exceed the budget"
        content_ids = content_ids[:budget]  # the word is read at its first sub-token; its tail is dropped
    shift = len(template.prefix_ids) - cumulative[window.start]
    first_positions = [cumulative[word] + shift for word in range(window.start, window.end)]
    return template.input_ids(content_ids), first_positions


def _window_budget(max_length: int, overlap: int, template: SpecialTokensTemplate) -> int:
    """Sub-tokens a window may hold once the special tokens are in, after checking `max_length` and `overlap`
    (`check_window_size`, then that the tokenizer's special tokens leave room for more than the overlap)."""
    check_window_size(max_length, overlap)
    budget = max_length - template.num_special_tokens
    if budget < 1:
        raise ValueError(
            f"max_length: expected more than the {template.num_special_tokens} special tokens the tokenizer adds, "
            f"got {max_length}"
        )
    if not 0 <= overlap < budget:
        raise ValueError(
            f"overlap: expected 0 <= overlap < {budget} (max_length {max_length} minus "
            f"{template.num_special_tokens} special tokens), got {overlap}"
        )
    return budget


def _check_label_ids(
    label_ids: Sequence[Sequence[int]], sentences_tokens: Sequence[Sequence[str]], sentence_indices: Sequence[int]
) -> None:
    if len(label_ids) != len(sentences_tokens):
        raise ValueError(f"label_ids: expected one list per sentence ({len(sentences_tokens)}), got {len(label_ids)}")
    for sentence_index, words, sentence_label_ids in zip(sentence_indices, sentences_tokens, label_ids):
        if len(sentence_label_ids) != len(words):
            raise ValueError(
                f"label_ids of sentence {sentence_index}: expected one per word ({len(words)}), "
                f"got {len(sentence_label_ids)}"
            )


def _encode_sentences_at(
    tokenizer: PreTrainedTokenizerBase,
    template: SpecialTokensTemplate,
    sentences_tokens: Sequence[Sequence[str]],
    sentence_indices: Sequence[int],
    *,
    max_length: int,
    overlap: int,
    label_ids: Sequence[Sequence[int]] | None,
    task_id: int,
) -> dict[str, list]:
    """`encode_sentences` with explicit sentence indices (a `datasets.map` batch need not hold consecutive ones)."""
    budget = _window_budget(max_length, overlap, template)
    if label_ids is not None:
        _check_label_ids(label_ids, sentences_tokens, sentence_indices)
    with_token_type_ids = "token_type_ids" in tokenizer.model_input_names
    rows: dict[str, list] = {"input_ids": [], "word_start_positions": []}
    if with_token_type_ids:
        rows["token_type_ids"] = []
    if label_ids is not None:
        rows["labels"] = []
    for key in ("task_ids", *METADATA_KEYS):
        rows[key] = []
    for position, word_pieces in enumerate(subtokens_per_word(tokenizer, sentences_tokens)):
        # Every word has >= 1 sub-token (subtokens_per_word guarantees it), so the windows need no further check.
        cumulative = list(itertools.accumulate(map(len, word_pieces), initial=0))
        for window in plan_windows([len(pieces) for pieces in word_pieces], budget, overlap):
            input_ids, word_start_positions = _encode_window(word_pieces, cumulative, window, budget, template)
            rows["input_ids"].append(input_ids)
            rows["word_start_positions"].append(word_start_positions)
            if with_token_type_ids:
                rows["token_type_ids"].append(template.token_type_ids(len(input_ids) - template.num_special_tokens))
            if label_ids is not None:
                rows["labels"].append(_label_ids_for_window(label_ids[position], window))
            rows["task_ids"].append(task_id)
            rows["sentence_index"].append(sentence_indices[position])
            rows["word_offset"].append(window.start)
            rows["owned_start"].append(window.owned_start - window.start)
            rows["owned_end"].append(window.owned_end - window.start)
    return rows


def encode_sentences(
    tokenizer: PreTrainedTokenizerBase,
    sentences_tokens: Sequence[Sequence[str]],
    *,
    max_length: int,
    overlap: int,
    label_ids: Sequence[Sequence[int]] | None = None,
    task_id: int = 0,
    sentence_offset: int = 0,
) -> dict[str, list]:
    """Tokenize sentences into windowed encoder rows, one row per window (see the module docstring for the columns).

    Args:
        tokenizer: a fast tokenizer.
        sentences_tokens: sentences as lists of words.
        max_length: most sub-tokens in a row, special tokens included.
        overlap: sub-tokens of context shared by consecutive windows of a long sentence.
        label_ids: label id of every word of every sentence; adds the `labels` column.
        task_id: id of the task (corpus) these sentences belong to.
        sentence_offset: `sentence_index` of the first sentence.

    Returns:
        Column name -> one entry per row (window), unpadded; `HSTLDataCollator` pads them.
    """
    template = special_tokens_template(tokenizer)
    sentence_indices = range(sentence_offset, sentence_offset + len(sentences_tokens))
    return _encode_sentences_at(
        tokenizer, template, sentences_tokens, sentence_indices,
        max_length=max_length, overlap=overlap, label_ids=label_ids, task_id=task_id,
    )


def _sentence_label_ids(
    labels: Sequence[str] | None, label2id: Mapping[str, int], task_id: int, sentence_index: int
) -> list[int]:
    if labels is None:
        raise ValueError(f"sentence {sentence_index}: expected labels, as other sentences of the batch have, got None")
    try:
        return [label2id[label] for label in labels]
    except KeyError:
        word_index, label = next((index, label) for index, label in enumerate(labels) if label not in label2id)
        raise ValueError(
            f"sentence {sentence_index}, word {word_index}: expected a label of task {task_id} "
            f"({sorted(label2id)}), got {label!r}"
        ) from None


def make_windowing_map_fn(
    tokenizer: PreTrainedTokenizerBase,
    label2id: Mapping[str, int],
    task_id: int,
    max_length: int,
    overlap: int,
) -> Callable[[dict[str, list]], dict[str, list]]:
    """A function for `Dataset.map(fn, batched=True, remove_columns=dataset.column_names)` that windows sentences.

    It reads the columns `tokens` (lists of words), `sentence_index` (ints) and, when present, `labels` (lists of
    label strings), and returns the columns of `encode_sentences`; a long sentence becomes several rows.

    Raises (from the returned function):
        ValueError: a required column is missing, or a label is not in `label2id` (names the label and the task's).
    """
    template = special_tokens_template(tokenizer)
    _window_budget(max_length, overlap, template)  # fail here, not inside datasets.map

    def windowing_map_fn(batch: dict[str, list]) -> dict[str, list]:
        missing_columns = [column for column in ("tokens", "sentence_index") if column not in batch]
        if missing_columns:
            raise ValueError(f"dataset: expected the columns 'tokens' and 'sentence_index', got {sorted(batch)}")
        label_ids = None
        labels_column = batch.get("labels")
        if labels_column is not None and any(labels is not None for labels in labels_column):
            label_ids = [
                _sentence_label_ids(labels, label2id, task_id, sentence_index)
                for labels, sentence_index in zip(labels_column, batch["sentence_index"])
            ]
        return _encode_sentences_at(
            tokenizer, template, batch["tokens"], batch["sentence_index"],
            max_length=max_length, overlap=overlap, label_ids=label_ids, task_id=task_id,
        )

    return windowing_map_fn


def length_sorted_order(lengths: Sequence[int]) -> list[int]:
    """Indices of windows, longest first (stable among equals): batches of similar lengths carry little padding, and
    an out-of-memory error shows up on the first batch, not the last."""
    return sorted(range(len(lengths)), key=lambda index: -lengths[index])


def _padded_length(lengths: Sequence[int], pad_to_multiple_of: int | None) -> int:
    longest = max(lengths)
    if pad_to_multiple_of:
        return -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    return longest


@dataclass
class HSTLDataCollator:
    """Pad `encode_sentences` rows into a batch of tensors for the HSTL model.

    Output keys (all `torch.long`):
        input_ids, attention_mask: (batch, seq), padded with the pad id on `tokenizer.padding_side`.
        token_type_ids: (batch, seq), padded with `tokenizer.pad_token_type_id`; only if the tokenizer has it as a
            model input.
        word_start_positions: (batch, max_words): for word w of a row, the index in the *padded* row of its first
            sub-token; words are left-aligned (word 0 in column 0) whatever the padding side; -1 for padding words.
        labels: (batch, max_words), -100 at padding words; only when the rows carry labels.
        task_ids, sentence_index, word_offset, owned_start, owned_end: (batch,), see `Window` and `stitch_predictions`.
    Other keys of the rows are not collated.
    """

    tokenizer: PreTrainedTokenizerBase
    pad_to_multiple_of: int | None = None

    def _check_features(self, features: Sequence[Mapping[str, Any]]) -> tuple[bool, bool]:
        """(whether to emit token_type_ids, whether to emit labels), after checking the rows carry what is needed."""
        if not features:
            raise ValueError("features: expected at least one row, got an empty list")
        if self.tokenizer.pad_token_id is None:
            raise ValueError(f"tokenizer: expected a pad token, got none in {type(self.tokenizer).__name__}")
        with_token_type_ids = "token_type_ids" in self.tokenizer.model_input_names
        required = ["input_ids", "word_start_positions", "task_ids", *METADATA_KEYS]
        if with_token_type_ids:
            required.append("token_type_ids")
        for row_index, feature in enumerate(features):
            missing = [key for key in required if key not in feature]
            if missing:
                raise ValueError(
                    f"features[{row_index}]: expected the keys {required} (rows from encode_sentences with this "
                    f"tokenizer), got {sorted(feature)}; missing {missing}"
                )
        rows_with_labels = sum(feature.get("labels") is not None for feature in features)
        if rows_with_labels not in (0, len(features)):
            raise ValueError(
                f"features: expected labels on all rows or none, got them on {rows_with_labels} of {len(features)}"
            )
        return with_token_type_ids, rows_with_labels > 0

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        import torch  # here, not at module level: reading text and scoring labels never need torch
        with_token_type_ids, with_labels = self._check_features(features)
        sequence_lengths = [len(feature["input_ids"]) for feature in features]
        padded_length = _padded_length(sequence_lengths, self.pad_to_multiple_of)
        word_counts = [len(feature["word_start_positions"]) for feature in features]
        max_words = max(word_counts)
        pad_left = self.tokenizer.padding_side == "left"
        lengths = torch.tensor(sequence_lengths)
        # shape: (batch,): how far left padding moves each row's sub-tokens right
        shifts = padded_length - lengths if pad_left else torch.zeros_like(lengths)
        columns = torch.arange(padded_length)
        tensors = {
            "input_ids": _padded_rows(features, "input_ids", padded_length, self.tokenizer.pad_token_id, pad_left),
            "attention_mask": ((columns >= shifts.unsqueeze(1)) & (columns < (shifts + lengths).unsqueeze(1))).long(),
        }
        positions = _padded_rows(features, "word_start_positions", max_words, PADDING_WORD_POSITION, False)
        tensors["word_start_positions"] = torch.where(positions >= 0, positions + shifts.unsqueeze(1), positions)
        if with_token_type_ids:
            tensors["token_type_ids"] = _padded_rows(features, "token_type_ids", padded_length,
                                                     self.tokenizer.pad_token_type_id, pad_left, like="input_ids")
        if with_labels:
            tensors["labels"] = _padded_rows(features, "labels", max_words, PAD_LABEL_ID, False,
                                             like="word_start_positions")
        for key in ("task_ids", *METADATA_KEYS):
            # shape: (batch,)
            tensors[key] = torch.tensor([int(feature[key]) for feature in features], dtype=torch.long)
        return tensors


def _padded_rows(features: Sequence[Mapping[str, Any]], key: str, width: int, pad_value: int, pad_left: bool,
                 like: str | None = None) -> torch.Tensor:
    """`(len(features), width)` int64 tensor of each row's `key` (integers) padded with `pad_value` on the left or
    right, after checking that each row has as many as its `like` (a row that did not would shift the values of the
    rows after it): gathered in one `array` of C integers, which `torch.frombuffer` reads without converting each
    Python integer again (a few times faster than `torch.tensor` of nested lists)."""
    import torch

    values = array.array("q")
    for index, feature in enumerate(features):
        row = feature[key]
        if like is not None and len(row) != len(feature[like]):
            raise ValueError(f"features[{index}]: expected as many {key} as {like} ({len(feature[like])}), "
                             f"got {len(row)}")
        padding = [pad_value] * (width - len(row))
        if pad_left:
            values.extend(padding)
        try:
            values.extend(row)
        except TypeError as error:
            raise TypeError(f"features[{index}][{key!r}]: expected integers, got {list(row)[:8]!r}") from error
        if not pad_left:
            values.extend(padding)
    if not values:
        return torch.zeros(len(features), width, dtype=torch.long)
    return torch.frombuffer(values, dtype=torch.long).view(len(features), width)


def stitch_predictions(
    window_predictions: Sequence[Sequence[int]],
    window_metadata: Sequence[Mapping[str, int]],
    num_words: Sequence[int],
) -> list[list[int]]:
    """Put per-window word predictions back together into per-sentence predictions.

    Args:
        window_predictions: for each window (row), its predictions per window word (window-relative; entries past
            the window's words, such as -100 padding, are ignored).
        window_metadata: for each window, a mapping with `sentence_index`, `word_offset`, `owned_start`,
            `owned_end` (rows of `encode_sentences` or of a windowed `datasets.Dataset` do).
        num_words: number of words of each sentence, indexed by `sentence_index`.

    Returns:
        `predictions[s][w]` for every word of every sentence, each taken from the window that owns the word.

    Raises:
        ValueError: the windows do not own every word exactly once.
    """
    if len(window_predictions) != len(window_metadata):
        raise ValueError(
            f"window_metadata: expected one row per window ({len(window_predictions)}), got {len(window_metadata)}"
        )
    stitched: list[list[int | None]] = [[None] * count for count in num_words]
    for row_index, (predictions, metadata) in enumerate(zip(window_predictions, window_metadata)):
        sentence_index, word_offset = int(metadata["sentence_index"]), int(metadata["word_offset"])
        owned_start, owned_end = int(metadata["owned_start"]), int(metadata["owned_end"])
        if not 0 <= sentence_index < len(stitched):
            raise ValueError(
                f"window {row_index}: expected a sentence_index in [0, {len(stitched)}), got {sentence_index}"
            )
        sentence = stitched[sentence_index]
        if not (0 <= owned_start <= owned_end <= len(predictions) and word_offset + owned_end <= len(sentence)):
            raise ValueError(
                f"window {row_index}: expected owned words [{owned_start}, {owned_end}) within its {len(predictions)} "
                f"predictions and, from word_offset {word_offset}, within the {len(sentence)} words of "
                f"sentence {sentence_index}"
            )
        for window_word in range(owned_start, owned_end):
            if sentence[word_offset + window_word] is not None:
                raise ValueError(
                    f"window {row_index}: expected each word owned once, "
                    f"got word {word_offset + window_word} of sentence {sentence_index} owned twice"
                )
            sentence[word_offset + window_word] = int(predictions[window_word])
    for sentence_index, sentence in enumerate(stitched):
        if None in sentence:
            raise ValueError(
                f"sentence {sentence_index}: expected every word owned by a window, got word {sentence.index(None)} "
                f"owned by none"
            )
    return stitched  # type: ignore[return-value]  # every None was replaced, checked above


def stitched_word_order(
    window_word_counts: torch.Tensor, window_metadata: torch.Tensor, num_words: Sequence[int]
) -> torch.LongTensor:
    """`stitch_predictions` as one index: the windows' words flattened (window after window, each window's words in
    order), `order[k]` is the flat index of the window word that owns word k of the sentences laid one after the other,
    so that `values[order]` stitches any per-word tensor of the windows at once.

    Args:
        window_word_counts: `(num_windows,)` words of each window.
        window_metadata: `(num_windows, 4)` rows of `METADATA_KEYS` (`sentence_index`, `word_offset`, `owned_start`,
            `owned_end`).
        num_words: number of words of each sentence, indexed by `sentence_index`.

    Raises:
        ValueError: the windows do not own every word exactly once (`stitch_predictions`' message).
    """
    import torch

    sentence_index, word_offset, owned_start, owned_end = window_metadata.long().unbind(1)
    lengths = torch.tensor(list(num_words), dtype=torch.long)
    total = int(lengths.sum())
    owned = owned_end - owned_start  # shape: (num_windows,)
    valid = bool(((sentence_index >= 0) & (sentence_index < len(lengths)) & (word_offset >= 0) & (owned_start >= 0)
                  & (owned >= 0)
                  & (owned_end <= window_word_counts)).all()) and int(owned.sum()) == total
    if valid:
        sentence_first = lengths.cumsum(0) - lengths
        window_first = window_word_counts.cumsum(0) - window_word_counts
        # shape: (total,): each owned word's position within its window's owned run
        within = torch.arange(total) - torch.repeat_interleave(owned.cumsum(0) - owned, owned)
        source = torch.repeat_interleave(window_first + owned_start, owned) + within
        target = torch.repeat_interleave(sentence_first[sentence_index] + word_offset + owned_start, owned) + within
        ends_inside = (word_offset + owned_end <= lengths[sentence_index]).all()
        if ends_inside and bool((torch.bincount(target, minlength=total) == 1).all()):
            return torch.empty(total, dtype=torch.long).index_put_((target,), source)
    # Some word is owned twice or not at all: the word-by-word stitching names it.
    first = 0
    flat_indices = []
    for count in window_word_counts.tolist():
        flat_indices.append(range(first, first + count))
        first += count
    metadata = [dict(zip(METADATA_KEYS, row)) for row in window_metadata.tolist()]
    stitch_predictions(flat_indices, metadata, num_words)
    raise AssertionError("stitched_word_order: the windows own every word once, yet the index was refused")


def stitch_words(
    window_values: Sequence[Sequence[Any]], window_metadata: Sequence[Mapping[str, int]], num_words: Sequence[int]
) -> list[list[Any]]:
    """`stitch_predictions` for per-word values of any kind (labels, scores, marginal rows): `values[s][w]` from the
    window that owns word `w` of sentence `s`. The windows' values are given as `window_values[r][w]`, window-relative
    (entries past a window's words are ignored)."""
    # stitch_predictions carries ints; stitching each window word's flat index carries any value.
    flat_values: list[Any] = []
    flat_indices = []
    for values in window_values:
        flat_indices.append(range(len(flat_values), len(flat_values) + len(values)))
        flat_values.extend(values)
    owners = stitch_predictions(flat_indices, window_metadata, num_words)
    return [[flat_values[index] for index in sentence] for sentence in owners]
