"""Tests of hstl.tokenization: offline XLNet-style tokenizer training, saving, reloading, and loading errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import sample_sentences
from transformers import AutoTokenizer

from hstl.data import read_split_dir, sample_data_dir
from hstl.tokenization import load_tokenizer, train_xlnet_tokenizer

XLNET_SPECIAL_IDS = {
    "<unk>": 0, "<s>": 1, "</s>": 2, "<cls>": 3, "<sep>": 4, "<pad>": 5, "<mask>": 6, "<eod>": 7, "<eop>": 8,
}




@pytest.fixture(scope="module")
def train_sentences() -> list[list[str]]:
    return sample_sentences("train")


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory, train_sentences: list[list[str]]) -> Path:
    output_dir = tmp_path_factory.mktemp("xlnet_tokenizer")
    train_xlnet_tokenizer(train_sentences, output_dir, vocab_size=4000, seed=0)
    return output_dir


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir: Path):
    return load_tokenizer(tokenizer_dir)


def test_special_pieces_have_xlnet_ids(tokenizer) -> None:
    assert {piece: tokenizer.convert_tokens_to_ids(piece) for piece in XLNET_SPECIAL_IDS} == XLNET_SPECIAL_IDS
    special_ids = (tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.unk_token_id)
    assert special_ids == (5, 3, 4, 0)
    assert tokenizer.padding_side == "left"
    assert tokenizer.is_fast
    assert "token_type_ids" in tokenizer.model_input_names


def test_held_out_words_become_real_pieces(tokenizer) -> None:
    held_out = sample_sentences("validation")[:50]
    encoded = tokenizer(held_out, is_split_into_words=True, add_special_tokens=False)
    all_ids = [token_id for ids in encoded["input_ids"] for token_id in ids]
    num_words = sum(len(words) for words in held_out)
    assert all_ids.count(tokenizer.unk_token_id) <= 0.01 * len(all_ids)
    # A useful vocabulary keeps common words whole or nearly so, far from one piece per character.
    assert len(all_ids) < 2.5 * num_words
    assert tokenizer.convert_tokens_to_ids(tokenizer.tokenize("the")) != [tokenizer.unk_token_id]


def test_sep_and_cls_are_appended_with_the_cls_segment(tokenizer) -> None:
    words = ["Interleukin-2", "gene", "expression", "."]
    encoded = tokenizer(words, is_split_into_words=True)
    assert encoded["input_ids"][-2:] == [tokenizer.sep_token_id, tokenizer.cls_token_id]
    assert tokenizer.sep_token_id not in encoded["input_ids"][:-2]
    assert encoded["token_type_ids"][-1] == 2  # XLNet's <cls> segment
    assert set(encoded["token_type_ids"][:-1]) == {0}


def test_left_padding_uses_the_pad_id(tokenizer) -> None:
    batch = tokenizer([["a"], ["a", "longer", "sentence"]], is_split_into_words=True, padding=True)
    assert batch["input_ids"][0][0] == tokenizer.pad_token_id
    assert batch["attention_mask"][0][0] == 0
    assert batch["input_ids"][0][-1] == tokenizer.cls_token_id


def test_saved_folder_reloads_with_auto_tokenizer(tokenizer, tokenizer_dir: Path) -> None:
    saved_files = {path.name for path in tokenizer_dir.iterdir()}
    assert {"spiece.model", "tokenizer.json", "tokenizer_config.json"} <= saved_files
    reloaded = AutoTokenizer.from_pretrained(tokenizer_dir)
    sentences = sample_sentences("test")[:30]
    assert reloaded(sentences, is_split_into_words=True)["input_ids"] == tokenizer(
        sentences, is_split_into_words=True
    )["input_ids"]
    assert reloaded.padding_side == "left"
    assert reloaded.model_input_names == tokenizer.model_input_names


def test_training_is_deterministic_under_the_seed(tmp_path: Path, train_sentences, tokenizer_dir: Path) -> None:
    # Texts given as strings must train exactly like the same texts given as word lists.
    again = train_xlnet_tokenizer([" ".join(words) for words in train_sentences], tmp_path / "again", seed=0)
    assert (tmp_path / "again" / "spiece.model").read_bytes() == (tokenizer_dir / "spiece.model").read_bytes()
    sentences = sample_sentences("test")[:30]
    first = load_tokenizer(tokenizer_dir)
    assert again(sentences, is_split_into_words=True)["input_ids"] == first(sentences, is_split_into_words=True)[
        "input_ids"
    ]


def test_training_accepts_sentence_objects(tmp_path: Path) -> None:
    sentences = read_split_dir(sample_data_dir() / "NCBI-disease")["train"][:100]
    tokenizer = train_xlnet_tokenizer(sentences, tmp_path, vocab_size=300)
    assert len(tokenizer) <= 300
    assert tokenizer.unk_token_id not in tokenizer(sentences[0].tokens, is_split_into_words=True)["input_ids"]


@pytest.mark.parametrize(
    ("texts", "vocab_size", "error", "message"),
    [
        (["some text"], 9, ValueError, "vocab_size"),
        (["", "   "], 100, ValueError, "non-blank"),
        (["fine", 3], 100, TypeError, r"sentences_or_texts\[1\]"),
    ],
)
def test_training_rejects_bad_input(tmp_path: Path, texts, vocab_size: int, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        train_xlnet_tokenizer(texts, tmp_path, vocab_size=vocab_size)


def test_load_tokenizer_names_a_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "tokenizer"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tokenizer(missing)


def test_load_tokenizer_names_a_folder_without_tokenizer(tmp_path: Path) -> None:
    with pytest.raises(OSError, match=str(tmp_path)):
        load_tokenizer(tmp_path)
