"""Corpora for training and evaluation: corpus folders (`read_split_dir`), label lists, and token-classification
datasets from Hugging Face.

The CoNLL reader and writer are `hstl.formats.conll` (one reader for training, scoring and prediction); the names
below are re-exported from there for the code that reads corpora through this module.

Stdlib only; `datasets` is imported inside `load_hf_token_dataset` so that reading corpora never pays for it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

from .errors import CorpusFormatError, DatasetInputError
from .formats.common import PathLike
from .formats.conll import DOCSTART, IOB_EXPECTATION, Sentence, is_blank_token, iter_conll, read_conll, write_conll
from labels_hstl import OUTSIDE_LABEL, entity_types, split_label

logger = logging.getLogger(__name__)

__all__ = ["DOCSTART", "OUTSIDE_LABEL", "CorpusFormatError", "PathLike", "Sentence", "iter_conll",
           "label_list_from", "load_hf_token_dataset", "read_conll", "read_split_dir", "sample_data_dir",
           "write_conll"]

SPLIT_FILE_NAMES: dict[str, tuple[str, ...]] = {
    "train": ("train.tsv",),
    "validation": ("devel.tsv", "dev.tsv", "validation.tsv"),
    "test": ("test.tsv",),
}
"""Split name (as Hugging Face names it) -> file names accepted for it in a corpus folder, canonical name first: the
BioNER corpora call the validation split `devel.tsv`."""

HF_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
"""File extension -> `datasets` packaged builder used by `load_hf_token_dataset` for a single local file."""


def sample_data_dir() -> Path:
    """The folder of small corpus samples shipped with the package: `<corpus>/{train,devel,test}.tsv`."""
    return Path(__file__).parent / "sample_data"


# ---------------------------------------------------------------------------------------------------------------------
# Corpus folders


def read_split_dir(directory: PathLike, *, labelled: bool = True) -> dict[str, list[Sentence]]:
    """Reads the splits of one corpus folder.

    Looks for `train.tsv`, `devel.tsv` (or `dev.tsv` or `validation.tsv`) and `test.tsv`; any subset may exist.

    Returns:
        Split name (`"train"`, `"validation"`, `"test"`) -> sentences, for the splits present, in that order.

    Raises:
        FileNotFoundError: naming the directory, when it does not exist or holds none of these files.
        ValueError: when more than one file claims the same split (e.g. both `devel.tsv` and `dev.tsv`).
        CorpusFormatError: from `read_conll`, for a malformed file.
    """
    directory = Path(directory)
    expected = "expected a folder holding train.tsv, devel.tsv (or dev.tsv / validation.tsv) and/or test.tsv"
    if not directory.is_dir():
        got = "a file" if directory.exists() else "no such folder"
        raise FileNotFoundError(f"{directory}: {expected}, got {got}")
    splits: dict[str, list[Sentence]] = {}
    for split, file_names in SPLIT_FILE_NAMES.items():
        present = [name for name in file_names if (directory / name).is_file()]
        if len(present) > 1:
            raise ValueError(f"{directory}: expected one file for the {split} split, got {present}")
        if present:
            splits[split] = read_conll(directory / present[0], labelled=labelled)
    if not splits:
        contents = sorted(entry.name for entry in directory.iterdir())
        raise FileNotFoundError(f"{directory}: {expected}, got {contents or 'an empty folder'}")
    return splits


# ---------------------------------------------------------------------------------------------------------------------
# Label lists


def label_list_from(sentences: Iterable[Sentence]) -> list[str]:
    """The label list a tagger for these sentences needs: `"O"`, then `B-T`, `I-T` for each entity type T, sorted.

    Both tags of a type are listed even when the data uses only one, so that a model can emit either.

    Raises:
        ValueError: when a sentence has no labels.
    """
    types: set[str] = set()
    for sentence in sentences:
        if sentence.labels is None:
            raise ValueError(f"sentence at line {sentence.line}: expected labels, got an unlabelled sentence")
        types.update(entity_types(set(sentence.labels)))
    return [OUTSIDE_LABEL] + [f"{tag}-{entity_type}" for entity_type in sorted(types) for tag in ("B", "I")]


# ---------------------------------------------------------------------------------------------------------------------
# Hugging Face datasets


def _is_saved_dataset(folder: Path) -> bool:
    """Whether `folder` was written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`."""
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


def _load_hf_split(name_or_path: str, split: str) -> Any:
    """One split as a `datasets.Dataset`, from the Hub, a local folder or file, or a `save_to_disk` folder."""
    import datasets

    path = Path(name_or_path)
    if path.is_dir() and _is_saved_dataset(path):
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise DatasetInputError(f"dataset {name_or_path!r}: expected a split among {list(loaded)}, got {split!r}")
            return loaded[split]
        return loaded  # a single saved Dataset is the split itself
    if path.is_file():
        builder = HF_FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise DatasetInputError(
                f"dataset {name_or_path!r}: expected a file ending in {', '.join(HF_FILE_BUILDERS)}, "
                f"got {path.suffix or 'no extension'!r}"
            )
        return datasets.load_dataset(builder, data_files={split: str(path)}, split=split)
    try:
        return datasets.load_dataset(name_or_path, split=split)
    except ValueError as error:  # an unknown split: 'Unknown split "x". Should be one of [...]'
        raise DatasetInputError(f"dataset {name_or_path!r} split {split!r}: {_first_line(error)}") from None
    except (ConnectionError, FileNotFoundError) as error:  # offline, or no such dataset on the Hub or on disk
        where = "no such local folder or file, and the Hub " + (
            "is unreachable (HF_HUB_OFFLINE is set)" if datasets.config.HF_HUB_OFFLINE else "does not answer")
        raise DatasetInputError(f"dataset {name_or_path!r}: {where}: {_first_line(error)}") from None


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _class_label_names(feature: Any) -> list[str] | None:
    """Label names when the tags column is a sequence of `ClassLabel` ids, else None (tags are stored as names)."""
    inner = getattr(feature, "feature", None)
    names = getattr(inner, "names", None)
    return list(names) if names else None


def _as_word_list(value: Any, what: str) -> list[Any]:
    """A row's tokens or tags as a list; a string (a CSV cell) holds them separated by whitespace."""
    if isinstance(value, str):
        return value.split()
    if value is None:
        raise DatasetInputError(f"{what}: expected a list, got None")
    return list(value)


def _row_labels(tags: list[Any], tag_names: list[str] | None, where: str, tags_column: str = "") -> list[str]:
    """Tag names for one row's tags, which are ClassLabel ids (mapped through `tag_names`) or names already."""
    labels = []
    for tag in tags:
        if isinstance(tag, str):
            label = tag
        elif tag_names is not None and isinstance(tag, int) and 0 <= tag < len(tag_names):
            label = tag_names[tag]
        else:
            known = (f"ids 0..{len(tag_names) - 1}" if tag_names else
                     "IOB2 label names (integer tags need a ClassLabel feature naming them, which this dataset lacks)")
            raise DatasetInputError(f"{where} column {tags_column!r}: expected {known}, got {tag!r}")
        try:
            split_label(label)
        except ValueError:
            raise DatasetInputError(f"{where}: {IOB_EXPECTATION}, got {label!r}") from None
        labels.append(label)
    return labels


def load_hf_token_dataset(
    name_or_path: PathLike,
    split: str,
    *,
    tokens_column: str = "tokens",
    tags_column: str = "ner_tags",
) -> tuple[list[Sentence], list[str]]:
    """Loads one split of a token-classification dataset as sentences.

    Sources: a folder written by `save_to_disk` (via `datasets.load_from_disk`; a saved single `Dataset` is used as
    it is, whatever `split` says); a local `.json`, `.jsonl`, `.parquet` or `.csv` file (the builder is picked from
    the extension and the file becomes `split`); otherwise a Hub dataset id or a local data folder, via
    `datasets.load_dataset`. In a CSV file, which cannot hold lists, tokens and tags are whitespace-separated strings.

    Args:
        name_or_path: where the dataset is.
        split: e.g. `"train"`, `"validation"`.
        tokens_column: column holding each row's list of words.
        tags_column: column holding each row's tags: `ClassLabel` ids or IOB2 label strings.

    Returns:
        `(sentences, label_names)`. Each sentence's `line` is its 1-based row number; rows without tokens are skipped
        (with a logged warning). `label_names` are the `ClassLabel` names in id order when the dataset has them,
        else `label_list_from(sentences)`.

    Raises:
        DatasetInputError: (a ValueError) naming the dataset and the split, column or row: an unknown split, a Hub id
            that cannot be reached, a missing column, tokens and tags of different lengths, integer tags without a
            `ClassLabel` feature, or tags that are not IOB2 labels.
    """
    name = str(name_or_path)
    dataset = _load_hf_split(name, split)
    missing = [column for column in (tokens_column, tags_column) if column not in dataset.column_names]
    if missing:
        raise DatasetInputError(
            f"dataset {name!r} split {split!r}: expected columns {tokens_column!r} and {tags_column!r} "
            f"(set tokens_column= / tags_column=), got columns {dataset.column_names}"
        )
    tag_names = _class_label_names(dataset.features[tags_column])
    if tag_names is not None:
        for label in tag_names:
            _row_labels([label], None, f"dataset {name!r}: ClassLabel names of {tags_column!r}")
    columns = dataset.select_columns([tokens_column, tags_column]).to_dict()
    sentences, empty_rows = [], 0
    for row_index, (tokens, tags) in enumerate(zip(columns[tokens_column], columns[tags_column])):
        where = f"dataset {name!r} split {split!r} row {row_index}"
        tokens = _as_word_list(tokens, f"{where} column {tokens_column!r}")
        for position, token in enumerate(tokens):
            # As in read_conll: an empty token would get no sub-token and so no place for its label.
            if not isinstance(token, str) or not token or token.isspace():
                raise DatasetInputError(f"{where} token {position}: expected a non-empty string token, got {token!r}")
        tags = _as_word_list(tags, f"{where} column {tags_column!r}")
        if len(tokens) != len(tags):
            raise DatasetInputError(f"{where}: expected one tag per token ({len(tokens)}), got {len(tags)} tags")
        if not tokens:
            empty_rows += 1
            continue
        sentences.append(Sentence(tokens, _row_labels(tags, tag_names, where, tags_column), line=row_index + 1))
    if empty_rows:
        logger.warning("dataset %r split %r: skipped %d row(s) without tokens", name, split, empty_rows)
    if not sentences:
        raise DatasetInputError(f"dataset {name!r} split {split!r}: expected at least one row with tokens, got none")
    return sentences, tag_names if tag_names is not None else label_list_from(sentences)
