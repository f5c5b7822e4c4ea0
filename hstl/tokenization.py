"""Tokenizers for HSTL: training a small XLNet-style sentencepiece tokenizer offline, and loading any saved one.

`train_xlnet_tokenizer` exists for tests, tiny demos and from-scratch experiments that must run without the Hub: it
trains a sentencepiece unigram model with XLNet's special pieces at XLNet's ids, so that it is interchangeable with
the `xlnet-base-cased` tokenizer as far as the model is concerned (pad 5, `<sep> <cls>` appended at the end, left
padding).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import sentencepiece
from transformers import AutoTokenizer, PreTrainedTokenizerBase, XLNetTokenizer

from .formats.common import PathLike


XLNET_UNK_ID = 0
XLNET_BOS_ID = 1
XLNET_EOS_ID = 2
XLNET_CONTROL_SYMBOLS = ("<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>")
"""Special pieces after `<unk> <s> </s>`, in XLNet's order: sentencepiece gives them ids 3..8, as in XLNet's own
`spiece.model` (cls 3, sep 4, pad 5, mask 6, eod 7, eop 8; `XLNetConfig` defaults to pad 5, bos 1, eos 2)."""

XLNET_MODEL_INPUT_NAMES = ["input_ids", "token_type_ids", "attention_mask"]
"""XLNet gives `<cls>` its own segment id (2); transformers 5 leaves `token_type_ids` out of the XLNet tokenizer's
`model_input_names`, so the model would never see it. Saved in `tokenizer_config.json`, so reloads keep it."""

SENTENCEPIECE_FILE_NAME = "spiece.model"


def _as_text(item: Any, index: int) -> str:
    """One training text: a string, a list of words, or an object with `.tokens` (an `hstl.data.Sentence`)."""
    words = getattr(item, "tokens", item)
    if isinstance(words, str):
        return words
    if isinstance(words, (list, tuple)) and all(isinstance(word, str) for word in words):
        return " ".join(words)
    raise TypeError(
        f"sentences_or_texts[{index}]: expected a string, a list of strings or an object with .tokens, "
        f"got {type(item).__name__}"
    )


def _non_empty_texts(sentences_or_texts: Iterable[Any]) -> Iterator[str]:
    """Training texts with blank ones skipped (sentencepiece learns nothing from them)."""
    for index, item in enumerate(sentences_or_texts):
        text = _as_text(item, index)
        if text.strip():
            yield text


def _train_sentencepiece_model(texts: list[str], vocab_size: int, seed: int) -> bytes:
    """Serialized unigram sentencepiece model with XLNet's special pieces at XLNet's ids."""
    # The seed drives the sampling of `input_sentence_size` sentences; one thread keeps the EM sums in one order,
    # so the same texts and seed give the same model byte for byte.
    sentencepiece.set_random_generator_seed(seed)
    model_bytes = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model_bytes,
        model_type="unigram",
        vocab_size=vocab_size,
        # A soft limit: a small corpus may not support `vocab_size` pieces, which is fine for a test tokenizer.
        hard_vocab_limit=False,
        unk_id=XLNET_UNK_ID,
        bos_id=XLNET_BOS_ID,
        eos_id=XLNET_EOS_ID,
        pad_id=-1,  # `<pad>` is a control symbol below, so that it lands on id 5 as in XLNet.
        control_symbols=list(XLNET_CONTROL_SYMBOLS),
        input_sentence_size=20_000,  # bounds training time on big inputs; a sample of sentences suffices
        shuffle_input_sentence=True,
        num_threads=1,
        minloglevel=2,  # sentencepiece logs every EM step to stderr otherwise
    )
    return model_bytes.getvalue()


def train_xlnet_tokenizer(
    sentences_or_texts: Iterable[Any],
    output_dir: PathLike,
    vocab_size: int = 4000,
    *,
    seed: int = 0,
) -> PreTrainedTokenizerBase:
    """Train an XLNet-style sentencepiece unigram tokenizer offline and save it to `output_dir`.

    Args:
        sentences_or_texts: training text, one item per sentence: a string, a list of words, or an object with a
            `.tokens` list (such as `hstl.data.Sentence`). Up to 20,000 sentences, sampled under `seed`, are used.
        output_dir: folder that receives `spiece.model` and the full tokenizer (`tokenizer.json`,
            `tokenizer_config.json`); created if needed. `AutoTokenizer.from_pretrained(output_dir)` reloads it.
        vocab_size: target number of pieces, special pieces included (a soft limit on tiny corpora).
        seed: seed of sentencepiece's sampling; the same texts and seed give the same ids.

    Returns:
        The fast `XLNetTokenizer` loaded back from `output_dir`: left padding, `<sep> <cls>` appended to a sequence,
        `token_type_ids` among its model inputs.
    """
    if vocab_size <= len(XLNET_CONTROL_SYMBOLS) + 3:
        num_special_pieces = len(XLNET_CONTROL_SYMBOLS) + 3
        raise ValueError(f"vocab_size: expected more than {num_special_pieces} (the special pieces), got {vocab_size}")
    texts = list(_non_empty_texts(sentences_or_texts))
    if not texts:
        raise ValueError("sentences_or_texts: expected at least one non-blank sentence, got none")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / SENTENCEPIECE_FILE_NAME).write_bytes(_train_sentencepiece_model(texts, vocab_size, seed))
    # In transformers 5, `XLNetTokenizer(vocab_file=...)` ignores the file and maps every word to <unk>; loading the
    # folder runs the sentencepiece -> tokenizers conversion instead.
    tokenizer = XLNetTokenizer.from_pretrained(output_dir, model_input_names=XLNET_MODEL_INPUT_NAMES)
    tokenizer.save_pretrained(output_dir)
    return XLNetTokenizer.from_pretrained(output_dir)


def _looks_like_local_path(name_or_path: str) -> bool:
    """True for strings that can only mean a folder: absolute, relative with `./` or `../`, or with 2+ slashes."""
    return os.path.isabs(name_or_path) or name_or_path.startswith(("./", "../", "~")) or name_or_path.count("/") > 1


def _hstl_config_kwargs(name: str) -> dict:
    """For an HSTL model folder, its config: passed to AutoTokenizer, it stops transformers from reading config.json
    itself, which (auto_map, model_type "hstl") would make it ask on stdin whether to trust remote code."""
    config_file = os.path.join(name, "config.json")
    if not os.path.isfile(config_file):
        return {}
    import json

    try:
        model_type = json.loads(open(config_file, encoding="utf-8").read()).get("model_type")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return {}
    if model_type != "hstl":
        return {}
    from configuration_hstl import HSTLConfig

    return {"config": HSTLConfig.from_pretrained(name)}


def load_tokenizer(name_or_path: PathLike) -> PreTrainedTokenizerBase:
    """Load a fast tokenizer from a folder (or a Hub id, when online) with `AutoTokenizer.from_pretrained`.

    Raises:
        FileNotFoundError: `name_or_path` names a folder that does not exist.
        OSError: no tokenizer could be loaded from it (the message names it and says what is needed).
        ValueError: the tokenizer is a slow (Python) one: HSTL's word alignment needs a fast tokenizer.
    """
    name = os.fspath(name_or_path)
    if not os.path.isdir(name) and (_looks_like_local_path(name) or os.path.exists(name)):
        raise FileNotFoundError(
            f"name_or_path: expected a tokenizer folder or a Hub model id, got {name!r}, which does not exist"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **_hstl_config_kwargs(name))
    except (OSError, ValueError) as error:
        raise OSError(
            f"name_or_path: expected a folder holding a saved tokenizer (tokenizer.json or spiece.model/vocab.txt "
            f"with tokenizer_config.json) or a reachable Hub model id, got {name!r}: {error}"
        ) from error
    if not tokenizer.is_fast:
        raise ValueError(
            f"name_or_path: expected a fast tokenizer (word_ids() is needed), got {type(tokenizer).__name__} "
            f"from {name!r}"
        )
    return tokenizer
