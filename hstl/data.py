"""Reading and writing token-per-line NER corpora, and loading token-classification datasets from Hugging Face.

A corpus file holds one token per line, `token<TAB>label` (any extra middle columns are ignored, and runs of spaces
separate the columns on a line without a TAB), IOB2 labels, and a blank line after every sentence. A `-DOCSTART-`
line (followed by a blank line) marks the start of a document; it is not a sentence. Files that differ from this
only in ways that carry no information (CRLF line ends, a UTF-8 byte order mark, trailing spaces or tabs, runs of
blank lines, no final newline) read exactly like clean ones; anything else that is malformed raises
`CorpusFormatError` naming the file and line.

`write_conll` writes the canonical form, so `write_conll(read_conll(path))` reproduces a canonical file byte for byte.

Stdlib only (plus the stdlib-only `hstl.scoring` for the one definition of an IOB2 label); `datasets` is imported
inside `load_hf_token_dataset` so that reading corpora never pays for it.
"""

from __future__ import annotations

import codecs
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, TextIO, Union

from processing_hstl import OUTSIDE_LABEL, split_label

logger = logging.getLogger(__name__)

DOCSTART = "-DOCSTART-"
SPLIT_FILE_NAMES: dict[str, tuple[str, ...]] = {
    "train": ("train.tsv",),
    "devel": ("devel.tsv", "dev.tsv", "validation.tsv"),
    "test": ("test.tsv",),
}
"""Split name -> file names accepted for it in a corpus folder, canonical name first."""

HF_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
"""File extension -> `datasets` packaged builder used by `load_hf_token_dataset` for a single local file."""

IOB_EXPECTATION = (
    "expected an IOB2 label: 'O', 'B-<type>' or 'I-<type>' "
    "(IOB/IOB2 only: IOBES/BILOU tags such as 'E-X', 'S-X', 'L-X' or 'U-X' are not supported)"
)
# Whitespace that may trail a line without meaning anything. ASCII only: a token made of, say, a no-break space is
# a real (if odd) token, not formatting.
_TRAILING_WHITESPACE = " \t\r\f\v"
_SPACE_RUN = re.compile(" +")

PathLike = Union[str, "os.PathLike[str]"]


class CorpusFormatError(ValueError):
    """A corpus file is malformed; the message reads `"{path}:{line}: {expected}, got {got}"`.

    Attributes:
        path: the file, as a string.
        line: 1-based line number of the problem, or None when it concerns no single line.
        expected: what a well-formed file has there.
        got: what the file has instead.
    """

    def __init__(self, path: PathLike, line: int | None, expected: str, got: str) -> None:
        self.path = str(path)
        self.line = line
        self.expected = expected
        self.got = got
        location = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{location}: {expected}, got {got}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle as `cls(*self.args)` by default, which does not match this signature; worker processes
        # (datasets.map(num_proc=...), DataLoader workers) need to send the error back intact.
        return type(self), (self.path, self.line, self.expected, self.got)


@dataclass
class Sentence:
    """One sentence of a corpus.

    Attributes:
        tokens: the words, in order; never empty when read from a file.
        labels: one IOB2 label per token, or None for unlabelled text.
        line: 1-based line of the first token in its file (for a Hugging Face dataset: the 1-based row number), so
            that errors found later can still point at the source.
        starts_document: a `-DOCSTART-` line stood before this sentence.
    """

    tokens: list[str]
    labels: list[str] | None
    line: int
    starts_document: bool = False

    def __post_init__(self) -> None:
        if self.labels is not None and len(self.labels) != len(self.tokens):
            raise ValueError(
                f"Sentence at line {self.line}: expected one label per token ({len(self.tokens)}), "
                f"got {len(self.labels)} labels"
            )


def sample_data_dir() -> Path:
    """The folder of small corpus samples shipped with the package: `<corpus>/{train,devel,test}.tsv`."""
    return Path(__file__).parent / "sample_data"


# ---------------------------------------------------------------------------------------------------------------------
# Reading


def _decode_utf8(raw: bytes, path: PathLike) -> str:
    """Decodes a whole file, dropping one leading byte order mark; bad bytes raise with their line number."""
    bom_length = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        return raw[bom_length:].decode("utf-8")
    except UnicodeDecodeError as error:
        offset = bom_length + error.start
        line_start = raw.rfind(b"\n", 0, offset) + 1
        line = raw.count(b"\n", 0, offset) + 1
        bad_bytes = raw[offset : bom_length + error.end].hex(" ")
        raise CorpusFormatError(
            path, line, "expected UTF-8 text", f"byte(s) {bad_bytes} at byte {offset - line_start + 1} of the line"
        ) from None


def _parse_conll_lines(lines: Iterable[str], path: PathLike, labelled: bool) -> list[Sentence]:
    """Turns the lines of a decoded file (line ends removed) into sentences; see `read_conll`.

    One flat loop on purpose: it runs once per token of every corpus, and a helper call per line would double the
    time it takes to read a large corpus.
    """
    sentences: list[Sentence] = []
    tokens: list[str] = []
    labels: list[str] = []
    first_line, starts_document = 0, False
    # A corpus has few distinct labels but many lines: each label is checked once, and every later occurrence
    # shares the first one's string object, which saves memory on large corpora.
    known_labels = {OUTSIDE_LABEL: OUTSIDE_LABEL}

    def close_sentence() -> None:
        nonlocal tokens, labels, starts_document
        if tokens:
            sentences.append(Sentence(tokens, labels if labelled else None, first_line, starts_document))
            tokens, labels, starts_document = [], [], False

    for line_number, raw_line in enumerate(lines, start=1):
        line = raw_line.rstrip(_TRAILING_WHITESPACE)
        if not line:
            close_sentence()
            continue
        # TAB-separated columns, or runs of spaces on a line without a TAB.
        columns = line.split("\t") if "\t" in line else _SPACE_RUN.split(line)
        token = columns[0]
        if not token or token.isspace():
            raise CorpusFormatError(path, line_number, "expected a non-empty token in the first column", repr(line))
        if token == DOCSTART:
            if tokens:
                raise CorpusFormatError(
                    path,
                    line_number,
                    f"expected {DOCSTART} only between sentences (after a blank line)",
                    f"it inside the sentence that starts at line {first_line}",
                )
            starts_document = True
            continue
        if not tokens:
            first_line = line_number
        tokens.append(token)
        if labelled:
            if len(columns) < 2:
                raise CorpusFormatError(
                    path, line_number, "expected a token and a label separated by a TAB", f"one column {line!r}"
                )
            label = known_labels.get(columns[-1])
            if label is None:
                label = columns[-1]
                _check_iob_label(label, path, line_number)
                known_labels[label] = label
            labels.append(label)
    close_sentence()
    return sentences


def _check_iob_label(label: str, path: PathLike, line_number: int) -> None:
    try:
        split_label(label)
    except ValueError:
        raise CorpusFormatError(path, line_number, IOB_EXPECTATION, repr(label)) from None


def read_conll(path: PathLike, *, labelled: bool = True) -> list[Sentence]:
    """Reads a token-per-line corpus file.

    Each non-blank line is one token: the first column is the token and, when `labelled`, the last column is its
    IOB2 label (middle columns, such as CoNLL-2003's POS and chunk tags, are ignored). Columns are separated by TABs,
    or by runs of spaces on a line that has no TAB. Blank lines end sentences; `-DOCSTART-` lines are document
    markers recorded as `Sentence.starts_document` on the next sentence. Labels are kept exactly as read: an `I-X`
    after `O` or after another type is valid input (conlleval starts a new mention there), not an error to repair.

    Args:
        path: the file.
        labelled: whether lines carry a label column. When False only the first column is read and every
            `Sentence.labels` is None.

    Returns:
        The sentences in file order; never empty.

    Raises:
        CorpusFormatError: naming the file and line, when the file is not UTF-8, holds no sentence, or has a line
            with an empty token, without a label column (`labelled=True`), with a label that is not IOB2, or with a
            `-DOCSTART-` inside a sentence.
    """
    raw = Path(path).read_bytes()
    text = _decode_utf8(raw, path)
    # Splitting on "\n" alone (not str.splitlines) keeps characters such as U+2028 or U+0085 inside their tokens;
    # the "\r" of a CRLF line end goes with the trailing whitespace.
    lines = text.split("\n")
    sentences = _parse_conll_lines(lines, path, labelled)
    if not sentences:
        got = "an empty file" if not raw else f"no token line in {text.count(chr(10)) + 1} line(s)"
        # Point at the end of the file: that is where the reader gave up looking for a sentence.
        raise CorpusFormatError(path, len(lines), "expected at least one sentence (token<TAB>label lines)", got)
    return sentences


def read_split_dir(directory: PathLike, *, labelled: bool = True) -> dict[str, list[Sentence]]:
    """Reads the splits of one corpus folder.

    Looks for `train.tsv`, `devel.tsv` (or `dev.tsv` or `validation.tsv`) and `test.tsv`; any subset may exist.

    Returns:
        Split name (`"train"`, `"devel"`, `"test"`) -> sentences, for the splits present, in that order.

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
# Writing


_BOM_CHARACTER = codecs.BOM_UTF8.decode("utf-8")
# Characters that would split a line or a column when read back; an unlabelled token also loses any space, since
# a line without a TAB is split on spaces.
_BREAKS_LABELLED_TOKEN = re.compile("[\t\n\r]")
_BREAKS_UNLABELLED_TOKEN = re.compile("[\t\n\r ]|[\f\v]$")
# The same tests run on a sentence's tokens joined by "\n" (MULTILINE: ^ and $ then sit at token boundaries), plus
# empty or whitespace-only tokens and a leading byte order mark; a match sends the sentence to the per-token check.
_SUSPICIOUS_LABELLED = re.compile("[\t\r]|^[^\\S\n]*$|^\ufeff", re.MULTILINE)
_SUSPICIOUS_UNLABELLED = re.compile("[\t\r ]|[\f\v]$|^[^\\S\n]*$|^\ufeff", re.MULTILINE)


def _check_writable_token(token: Any, labelled: bool, where: str) -> None:
    """Raises unless `read_conll` would give back exactly this token."""
    if not isinstance(token, str) or not token or token.isspace():
        raise ValueError(f"{where}: expected a non-empty string token, got {token!r}")
    breaking = _BREAKS_LABELLED_TOKEN if labelled else _BREAKS_UNLABELLED_TOKEN
    if token == DOCSTART or token[0] == _BOM_CHARACTER or breaking.search(token):
        spaces = "" if labelled else ", spaces (an unlabelled line is split on them)"
        raise ValueError(
            f"{where}: expected a token without TAB, line breaks{spaces} or a leading byte order mark, "
            f"other than {DOCSTART}, got {token!r}"
        )


def _check_writable_label(label: Any, where: str) -> None:
    """Raises unless `label` is IOB2 and reads back unchanged as the last column of a line."""
    if not isinstance(label, str):
        raise ValueError(f"{where}: {IOB_EXPECTATION}, got {label!r}")
    try:
        split_label(label)
    except ValueError:
        raise ValueError(f"{where}: {IOB_EXPECTATION}, got {label!r}") from None
    if _BREAKS_LABELLED_TOKEN.search(label) or label.rstrip(_TRAILING_WHITESPACE) != label:
        raise ValueError(f"{where}: expected a label without TAB, line breaks or trailing whitespace, got {label!r}")


def _sentence_block(sentence: Sentence, index: int, known_labels: set[str]) -> str:
    """A sentence in canonical form: its `-DOCSTART-` marker if any, one line per token, then a blank line.

    `known_labels` holds labels already checked; it grows as new ones pass (a corpus has few distinct labels).
    """
    where = f"sentences[{index}] (line {sentence.line})"
    tokens, labels = sentence.tokens, sentence.labels
    if not tokens:
        raise ValueError(f"{where}: expected at least one token, got none")
    # Checking the joined tokens at once is several times faster than a check per token; only a sentence that
    # looks wrong is checked token by token, to name the culprit (or to clear a false alarm).
    try:
        joined_tokens = "\n".join(tokens)
        suspicious = _SUSPICIOUS_LABELLED if labels is not None else _SUSPICIOUS_UNLABELLED
        looks_wrong = (
            joined_tokens.count("\n") != len(tokens) - 1 or DOCSTART in tokens or suspicious.search(joined_tokens)
        )
    except TypeError:  # a token that is not a string
        looks_wrong = True
    if looks_wrong:
        for position, token in enumerate(tokens):
            _check_writable_token(token, labels is not None, f"{where} token {position}")
    if labels is None:
        body = joined_tokens
    else:
        for label in set(labels) - known_labels:
            _check_writable_label(label, f"{where} label {label!r}")
            known_labels.add(label)
        body = "\n".join(map("\t".join, zip(tokens, labels)))
    marker = f"{DOCSTART}\t{OUTSIDE_LABEL}\n\n" if sentence.starts_document else ""
    return f"{marker}{body}\n\n"


def write_conll(path_or_textio: PathLike | TextIO, sentences: Iterable[Sentence]) -> None:
    """Writes sentences in the canonical form that `read_conll` reads back unchanged.

    Canonical form: UTF-8 without byte order mark, `"\\n"` line ends, `token<TAB>label` lines (just `token` for a
    sentence whose labels are None), a blank line after every sentence (so the file ends with `"\\n\\n"`), and
    `-DOCSTART-<TAB>O` plus a blank line before a sentence with `starts_document`.

    Args:
        path_or_textio: a file path (created or overwritten) or an open text stream.
        sentences: what to write.

    Raises:
        ValueError: for a sentence that the reader would not give back as it is: no tokens, an empty token, a token
            holding a TAB or a line break, a label that is not IOB2.
    """
    if isinstance(path_or_textio, (str, os.PathLike)):
        # newline="\n": no "\r\n" translation on Windows, so the bytes are the same everywhere.
        with open(path_or_textio, "w", encoding="utf-8", newline="\n") as handle:
            _write_blocks(handle, sentences)
    else:
        _write_blocks(path_or_textio, sentences)


def _write_blocks(handle: TextIO, sentences: Iterable[Sentence]) -> None:
    known_labels: set[str] = set()
    for index, sentence in enumerate(sentences):
        handle.write(_sentence_block(sentence, index, known_labels))


# ---------------------------------------------------------------------------------------------------------------------
# Label lists


def entity_types(labels: Iterable[str]) -> list[str]:
    """The entity types named by IOB2 labels, sorted: `["O", "B-Gene", "I-Chemical"]` gives `["Chemical", "Gene"]`.

    Raises:
        ValueError: for a label that is not IOB2.
    """
    types = set()
    for label in labels:
        tag, entity_type = split_label(label)
        if tag != OUTSIDE_LABEL:
            types.add(entity_type)
    return sorted(types)


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
                raise ValueError(f"dataset {name_or_path!r}: expected a split among {list(loaded)}, got {split!r}")
            return loaded[split]
        return loaded  # a single saved Dataset is the split itself
    if path.is_file():
        builder = HF_FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise ValueError(
                f"dataset {name_or_path!r}: expected a file ending in {', '.join(HF_FILE_BUILDERS)}, "
                f"got {path.suffix or 'no extension'!r}"
            )
        return datasets.load_dataset(builder, data_files={split: str(path)}, split=split)
    return datasets.load_dataset(name_or_path, split=split)


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
        raise ValueError(f"{what}: expected a list, got None")
    return list(value)


def _row_labels(tags: list[Any], tag_names: list[str] | None, where: str) -> list[str]:
    """Tag names for one row's tags, which are ClassLabel ids (mapped through `tag_names`) or names already."""
    labels = []
    for tag in tags:
        if isinstance(tag, str):
            label = tag
        elif tag_names is not None and isinstance(tag, int) and 0 <= tag < len(tag_names):
            label = tag_names[tag]
        else:
            known = f"ids 0..{len(tag_names) - 1}" if tag_names else "label names (no ClassLabel feature gives ids)"
            raise ValueError(f"{where}: expected {known}, got {tag!r}")
        try:
            split_label(label)
        except ValueError:
            raise ValueError(f"{where}: {IOB_EXPECTATION}, got {label!r}") from None
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
        ValueError: naming the dataset (and row) for a missing column, an unknown split of a saved DatasetDict,
            tokens and tags of different lengths, or tags that are not IOB2 labels.
    """
    name = str(name_or_path)
    dataset = _load_hf_split(name, split)
    missing = [column for column in (tokens_column, tags_column) if column not in dataset.column_names]
    if missing:
        raise ValueError(
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
                raise ValueError(f"{where} token {position}: expected a non-empty string token, got {token!r}")
        tags = _as_word_list(tags, f"{where} column {tags_column!r}")
        if len(tokens) != len(tags):
            raise ValueError(f"{where}: expected one tag per token ({len(tokens)}), got {len(tags)} tags")
        if not tokens:
            empty_rows += 1
            continue
        sentences.append(Sentence(tokens, _row_labels(tags, tag_names, where), line=row_index + 1))
    if empty_rows:
        logger.warning("dataset %r split %r: skipped %d row(s) without tokens", name, split, empty_rows)
    if not sentences:
        raise ValueError(f"dataset {name!r} split {split!r}: expected at least one row with tokens, got none")
    return sentences, tag_names if tag_names is not None else label_list_from(sentences)
