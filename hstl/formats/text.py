"""Plain UTF-8 text in, JSON Lines out: the lazy text reader (sentences and words with character offsets) and the
writer of one JSON object per tagged sentence.

Sentences and words come from `text_hstl` (`split_sentences`, `tokenize`). Offsets are characters (end exclusive) into the whole input as
`open(path, encoding="utf-8-sig", newline="").read()` returns it: a leading byte order mark is not counted and a
CRLF line end counts as two characters. Paragraphs end at separator lines (`hstl.formats.common.is_separator`).
Output records: `{"document", "text", "start", "end", "entities": [{"start", "end", "text", "type", "task",
"score"}]}`, `score` being the mention's confidence (`mentions_hstl.mention_confidence`, rounded to 4 decimals);
U+0085, U+2028 and U+2029 are written as JSON escapes, so that each object is one line for any line splitter. The
document id of plain text is `<input file name>:<paragraph number>`, paragraphs counted from 1 among those holding
text (e.g. `abstracts.txt:3` for the third abstract of a file with one abstract per paragraph).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from text_hstl import split_sentences, tokenize
from .common import FileRange, LineCounter, PathLike, is_separator, rounded_score

_TEXT_CHARACTERS_PER_SPLIT = 65_536
"""Text buffered before complete sentences are split off a paragraph that has not ended yet."""


@dataclass
class TextSentence:
    """A sentence of plain text with its words; all offsets are characters into the whole input, end exclusive."""

    text: str
    start: int
    end: int
    document: str = ""
    """Id of the document (text: `<file name>:<paragraph number>`)."""

    @functools.cached_property
    def tokens(self) -> list[tuple[str, int, int]]:
        """`(word, start, end)` of each word (`text_hstl.tokenize`), made when first read: counting the sentences of
        an input (`hstl.inference.sharding.count_units`) splits it but never tokenizes it."""
        return tokenize(self.text, self.start)

    @property
    def words(self) -> list[str]:
        return [token for token, _, _ in self.tokens]


def text_sentences(text: str, offset: int, document: str = "") -> list[TextSentence]:
    """The sentences of `text`, which starts at character `offset` of the input (of document `document`)."""
    return [
        TextSentence(text[start:end], offset + start, offset + end, document)
        for start, end in split_sentences(text)
    ]


def iter_text_sentences(path: PathLike) -> Iterator[TextSentence]:
    """The sentences of a UTF-8 text file, read lazily (a paragraph at a time, or 64k characters of a long one).

    `text_hstl.split_sentences` boundaries depend only on the text around them, so a paragraph split piece by piece (each piece
    starting where a sentence starts) gives the same sentences as split whole.

    Raises:
        CorpusFormatError: naming the file and line, for bytes that are not UTF-8 or a file without any text.
    """
    buffer: list[str] = []
    position = path.first_character if isinstance(path, FileRange) else 0
    buffered_characters, buffer_start, found_sentence = 0, position, False
    next_split_at = _TEXT_CHARACTERS_PER_SPLIT
    paragraph, paragraph_has_text = path.first_paragraph if isinstance(path, FileRange) else 1, False
    lines, file_name = LineCounter(path), Path(path).name
    for _, line in lines:
        document = f"{file_name}:{paragraph}"
        if is_separator(line):  # a paragraph break: everything buffered is complete
            for sentence in text_sentences("".join(buffer), buffer_start, document):
                paragraph_has_text = found_sentence = True
                yield sentence
            paragraph += paragraph_has_text
            buffer, buffered_characters, buffer_start = [], 0, position + len(line)
            next_split_at, paragraph_has_text = _TEXT_CHARACTERS_PER_SPLIT, False
        else:
            buffer.append(line)
            buffered_characters += len(line)
        position += len(line)
        if buffered_characters >= next_split_at:
            # The last sentence may go on in the next line: keep it (and what follows it) buffered.
            sentences = text_sentences("".join(buffer), buffer_start, document)
            for sentence in sentences[:-1]:
                paragraph_has_text = found_sentence = True
                yield sentence
            if len(sentences) > 1:
                carried = "".join(buffer)[sentences[-1].start - buffer_start :]
                buffer, buffered_characters, buffer_start = [carried], len(carried), sentences[-1].start
            next_split_at = buffered_characters + _TEXT_CHARACTERS_PER_SPLIT  # linear, even for one huge sentence
    for sentence in text_sentences("".join(buffer), buffer_start, f"{file_name}:{paragraph}"):
        found_sentence = True
        yield sentence
    if not found_sentence:
        raise lines.nothing_found("expected some text to tag",
                                  "only whitespace and control characters in {lines} line(s)")


# ---------------------------------------------------------------------------------------------------------------------
# Writing


def _entity_record(sentence: TextSentence, mention) -> dict[str, Any]:
    start, end = sentence.tokens[mention.start][1], sentence.tokens[mention.end - 1][2]
    text = sentence.text[start - sentence.start : end - sentence.start]
    return {"start": start, "end": end, "text": text, "type": mention.type, "label_type": mention.label_type,
            "task": mention.task, "score": rounded_score(mention.score)}


def sentence_entities(sentence: TextSentence, labels_by_task: Mapping[str, Sequence[str]], merge: str,
                      scores_by_task: Mapping[str, Sequence[Mapping[str, float]]] | None = None,
                      entity_type_of: Mapping[str, Mapping[str, str]] | None = None) -> list[dict]:
    """The entities of a text sentence with character offsets (the sentence's frame) and confidences (from the heads'
    word marginals `scores_by_task`, when given), under a merge policy, typed by `entity_type_of`
    (`HSTLConfig.entity_types`; `type` the shared type, `label_type` the head's own)."""
    from ..inference.merging import merge_mentions

    mentions = merge_mentions(labels_by_task, merge, scores_by_task, entity_type_of=entity_type_of)
    return [_entity_record(sentence, mention) for mention in mentions]


_LINE_BREAKS_INSIDE_JSON = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})
_JSON = json.JSONEncoder(ensure_ascii=False)
"""`json.dumps(..., ensure_ascii=False)` made once: `dumps` builds an encoder at each call given a non-default option."""


def render_text_sentence(sentence: TextSentence, labels_by_task: Mapping[str, Sequence[str]], merge: str,
                         scores_by_task: Mapping[str, Sequence[Mapping[str, float]]] | None = None,
                         entity_type_of: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """One JSON line: the sentence, its offsets and its entities."""
    record = {"document": sentence.document, "text": sentence.text, "start": sentence.start, "end": sentence.end,
              "entities": sentence_entities(sentence, labels_by_task, merge, scores_by_task,
                                            entity_type_of=entity_type_of)}
    line = _JSON.encode(record)
    # JSON may hold U+0085, U+2028 and U+2029 raw, but `str.splitlines` (and many JSONL readers) end a line there:
    # escaped, every record stays on one line for any reader, and decodes to the same text (looked for first:
    # three scans for a character cost less than one translation, and almost no text holds them).
    if "\x85" in line or "\u2028" in line or "\u2029" in line:
        line = line.translate(_LINE_BREAKS_INSIDE_JSON)
    return line + "\n"
