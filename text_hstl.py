# Copyright 2026 The HSTL developers. Licensed under the Apache License, Version 2.0.
"""Plain biomedical text to sentences and words, with character offsets into the original text (`split_sentences`,
`tokenize`).

Hub remote code, copied into every model folder with its `*_hstl.py` siblings. Standard library only.

Tokenization follows the corpora HSTL is trained on. 12 of the 13 corpora in `../shared/data/bioner` (all but
JNLPBA) split text at every character that is not a letter or a digit: "IL-2" is `IL - 2`, "5-fluorouracil" is
`5 - fluorouracil`, "C/EBP" is `C / EBP`, "0.05" is `0 . 05`, "Crohn's" is `Crohn ' s`, "et al." is `et al .`, and none
of their tokens mixes letters or digits with punctuation. JNLPBA (GENIA tokenization) keeps "IL-2", "0.05", "CD4+"
whole; we follow the majority, since a model tags best the text cut the way most of its training data was. So a token
is a maximal run of letters and digits (Unicode-aware; combining diacritics stay with their letter), or any other
single non-whitespace character. Whitespace is what `str.isspace` says it is; every other character, control and
zero-width characters included, belongs to exactly one token, so no text is lost.

Sentences end at `.`, `!` or `?` (optionally followed by closing quotes or brackets) when whitespace and then a capital
letter, a digit or an opening bracket or quote follow, except after an abbreviation: a known one ("e.g.", "i.e.",
"et al.", "Fig.", "vs.", "Dr.", "approx.", ...), dotted initials ("U.S.", "a.m."), a single capital letter ("E. coli",
"J. Smith") and "no."/"vol."/"p."/"pp." before a number. A blank line (a paragraph break) always ends a sentence; a
single line break is only whitespace, so hard-wrapped text reads as it would unwrapped.

Each boundary depends only on the word before it and the first character after the whitespace that follows it, so
splitting any text that starts at a sentence start gives the same later boundaries as splitting the whole text:
readers can split a long stream piece by piece.
"""

from __future__ import annotations

import re


ABBREVIATIONS = frozenset({
    "e.g", "i.e", "al", "fig", "figs", "vs", "dr", "drs", "mr", "mrs", "ms", "prof", "approx", "ca", "cf", "resp",
    "eq", "eqs", "ref", "refs", "tab", "suppl", "sp", "spp", "subsp", "var", "cv", "st", "inc", "ltd", "co", "corp",
    "jr", "sr", "dept", "univ", "viz", "incl", "max", "min", "avg", "est",
})
"""Lower-cased words (without their final period) after which a period does not end a sentence."""

NUMBER_ABBREVIATIONS = frozenset({"no", "nos", "vol", "p", "pp"})
"""Lower-cased words that abbreviate only before a number ("no. 5"); "... the answer was no. The" still ends."""

_WORD_RUN = r"(?:[^\W_]|[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f])+"
# A token: letters and digits (plus the combining diacritics of decomposed accented letters), or one other character.
_TOKEN = re.compile(rf"{_WORD_RUN}|\S")
# Sentence-final punctuation with the closing quotes and brackets that may follow it, then the whitespace after it.
_SENTENCE_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]}]*(\s+)")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r]*\n\s*")
# A paragraph break is a line of nothing but ASCII spaces and TABs (`hstl.formats.common.is_separator`): a line
# holding U+3000 or U+00A0 is text, as it is in every reader.
_DOTTED_INITIALS = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")
_OPENING_CHARACTERS = frozenset("([{\"'\u201c\u2018")


def tokenize(text: str, start: int = 0) -> list[tuple[str, int, int]]:
    """Splits text into words the way the BioNER corpora are tokenized (see the module docstring).

    Args:
        text: any string.
        start: offset added to every position, e.g. where `text` starts in a larger document.

    Returns:
        `(token, token_start, token_end)` triples in order, with `text[token_start - start : token_end - start] ==
        token`; together they cover every non-whitespace character of `text` exactly once.
    """
    return [(match.group(), match.start() + start, match.end() + start) for match in _TOKEN.finditer(text)]


def _word_before(text: str, position: int) -> str:
    """The run of non-whitespace characters that ends at `position`, without opening brackets or quotes."""
    word_start = position
    while word_start > 0 and not text[word_start - 1].isspace():
        word_start -= 1
    return text[word_start:position].lstrip("([{\"'\u201c\u2018")


def _is_abbreviation(word: str, next_character: str) -> bool:
    """Whether a period right after `word`, followed by whitespace and `next_character`, belongs to the word."""
    lowered = word.lower()
    if lowered in ABBREVIATIONS or _DOTTED_INITIALS.fullmatch(word):
        return True
    if lowered in NUMBER_ABBREVIATIONS and next_character.isdigit():
        return True
    # "E. coli", "J. Smith": a lone capital is an initial far more often than a sentence-final word.
    return len(word) == 1 and word.isupper()


def _starts_sentence(character: str) -> bool:
    return character.isupper() or character.isdigit() or character in _OPENING_CHARACTERS


def _boundaries(text: str) -> list[int]:
    """Positions (just after the final punctuation and its closers) where a sentence ends inside one paragraph."""
    boundaries = []
    for match in _SENTENCE_END.finditer(text):
        next_position = match.end()
        if next_position == len(text):
            continue  # the text ends here: its end is a boundary anyway
        punctuation_end = match.start(1)
        next_character = text[next_position]
        if not _starts_sentence(next_character):
            continue
        if match.group().startswith(".") and _is_abbreviation(_word_before(text, match.start()), next_character):
            continue
        boundaries.append(punctuation_end)
    return boundaries


def _stripped_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """`(start, end)` narrowed to exclude leading and trailing whitespace; None when nothing is left."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Splits text into sentences (see the module docstring for the rules).

    Returns:
        `(start, end)` character spans in order, end exclusive, without leading or trailing whitespace; together
        they cover every non-whitespace character of `text` exactly once. Empty for blank text.
    """
    cuts = [0]
    for paragraph_break in _PARAGRAPH_BREAK.finditer(text):
        cuts.append(paragraph_break.start())
    cuts.append(len(text))
    spans = []
    for paragraph_start, paragraph_end in zip(cuts, cuts[1:]):
        paragraph = text[paragraph_start:paragraph_end]
        sentence_ends = [*_boundaries(paragraph), len(paragraph)]
        sentence_start = 0
        for sentence_end in sentence_ends:
            span = _stripped_span(text, paragraph_start + sentence_start, paragraph_start + sentence_end)
            if span is not None:
                spans.append(span)
            sentence_start = sentence_end
    return spans
