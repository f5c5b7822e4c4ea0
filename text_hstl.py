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
single other character that is not blank. Blank is whitespace (what `str.isspace` says) and the control characters
(Unicode category Cc: U+0000-U+001F, U+007F-U+009F; `is_blank`): a NUL or a BEL in the text separates words as a space
does and never ends up inside a mention, and offsets still count it. Every other character, zero-width and format
characters included, belongs to exactly one token, so no text is lost.

Sentences end at `.`, `!` or `?` (optionally followed by closing quotes or brackets) when whitespace and then a capital
letter, a digit or an opening bracket or quote follow, except after an abbreviation, and except right after a
comparison sign (`=`, `<`, `>`, U+2264, U+2265, U+00B1): in "(P <. 001)" the period is a decimal point spaced off, as
some PubMed abstracts have it. A period followed directly by a capitalized word ("mg/kg.The") ends a sentence too
when a lowercase letter, a digit or a closing bracket precedes it and the word is no abbreviation: a missing space
after the full stop. The abbreviations:

- titles ("Dr.", "Prof.", "St.", ...): always, a name follows;
- known ones ("e.g.", "i.e.", "et al.", "Fig.", "vs.", "approx.", ...) and dotted initials ("U.S.", "a.m."): unless the
  next word is one that starts sentences and is rarely capitalized inside one (`SENTENCE_STARTERS`: "The", "In",
  "We", "However", ...): "in the U.S. Food trial" is one sentence, "in the U.S. The study" two, as is "et al. The";
- "no."/"vol."/"p."/"pp." before a number;
- a single capital letter ("E. coli", "J. Smith") is an initial, except after a lowercase word of the same sentence
  or before a sentence starter: there it names something ("vitamin C. The", "gene A. Expression", "hepatitis B. In"),
  which in biomedical text is far more frequent at a sentence's end than an initial after a lowercase word ("by J.
  Smith" is cut after "J.").

A blank line (a paragraph break) always ends a sentence; a single line break is only whitespace, so hard-wrapped text
reads as it would unwrapped.

Each boundary depends only on the text of its own sentence and on the next word, so splitting any text that starts at
a sentence start gives the same later boundaries as splitting the whole text: readers can split a long stream piece
by piece.
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

TITLES = frozenset({"dr", "drs", "mr", "mrs", "ms", "prof", "st", "jr", "sr"})
"""Lower-cased abbreviations that a name always follows: their period never ends a sentence."""

SENTENCE_STARTERS = frozenset({
    "The", "This", "These", "That", "Those", "There", "Here", "It", "Its", "We", "Our", "They", "Their", "A", "An",
    "In", "On", "At", "By", "For", "From", "To", "With", "Within", "Without", "Of", "As", "After", "Before", "During",
    "Although", "Though", "However", "Moreover", "Furthermore", "Thus", "Therefore", "Hence", "Finally", "Since",
    "When", "While", "Whereas", "If", "Among", "Both", "All", "Such", "Each", "Further", "Additionally", "Similarly",
    "Conversely", "Taken", "Together", "Overall", "Notably", "Interestingly", "Importantly", "Nevertheless",
})
"""Words that start sentences and are rarely capitalized inside one: after an abbreviation or initial, one of them
means the period ended the sentence ("in the U.S. The study")."""

_COMBINING = r"\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
# A token: a maximal run of letters and digits (`[^\W_]`) and combining diacritics (of decomposed accented letters),
# or one other character. The run is written as runs of one character class each, first the letters' then the
# diacritics' (or the other way round when a diacritic opens it): `re` scans a class repeated on its own far faster
# than an alternation repeated.
_WORD_RUN = rf"[^\W_]+(?:[{_COMBINING}]+[^\W_]*)*|[{_COMBINING}]+(?:[^\W_]+[{_COMBINING}]*)*"
_BLANK = r"\s\x00-\x1f\x7f-\x9f"
# Whitespace and the control characters: what separates tokens and sentences (`is_blank`).
_TOKEN = re.compile(rf"{_WORD_RUN}|[^{_BLANK}]")
# Sentence-final punctuation with the closing quotes and brackets that may follow it, then the whitespace after it.
_SENTENCE_END = re.compile(rf"[.!?]+[\"'\u201d\u2019)\]}}]*([{_BLANK}]+)")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r]*\n\s*")
# A paragraph break is a line of nothing but ASCII spaces and TABs (`hstl.formats.common.is_separator`): a line
# holding U+3000 or U+00A0 is text, as it is in every reader.
_DOTTED_INITIALS = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")
# A period with no space before a capitalized word: "mg/kg.The".
_GLUED_PERIOD = re.compile(r"\.(?=[^\W\d_][^\W\d_])")
_FIRST_WORD = re.compile(r"[^\W\d_]+")
_OPERATORS = frozenset("=<>\u2264\u2265\u00b1")
# A period right after one of these starts a number ("P <. 001", "P =. 03"): no sentence ends there.
_OPENING_CHARACTERS = frozenset("([{\"'\u201c\u2018")
_CLOSING_CHARACTERS = "\"'\u201d\u2019)]}"


def is_blank(character: str) -> bool:
    """Whether a character separates tokens: whitespace, or a control character (see the module docstring)."""
    return character.isspace() or character <= "\x1f" or "\x7f" <= character <= "\x9f"


def tokenize(text: str, start: int = 0) -> list[tuple[str, int, int]]:
    """Splits text into words the way the BioNER corpora are tokenized (see the module docstring).

    Args:
        text: any string.
        start: offset added to every position, e.g. where `text` starts in a larger document.

    Returns:
        `(token, token_start, token_end)` triples in order, with `text[token_start - start : token_end - start] ==
        token`; together they cover every character of `text` that is not blank (`is_blank`) exactly once.
    """
    return [(match[0], match.start() + start, match.end() + start) for match in _TOKEN.finditer(text)]


def _word_before(text: str, position: int) -> str:
    """The run of non-whitespace characters that ends at `position`, without opening brackets or quotes."""
    word_start = position
    while word_start > 0 and not is_blank(text[word_start - 1]):
        word_start -= 1
    return text[word_start:position].lstrip("([{\"'\u201c\u2018")


def _next_word(text: str, position: int) -> str:
    """The run of letters that starts at `position` (empty when a letter does not start there)."""
    match = _FIRST_WORD.match(text, position)
    return match.group() if match else ""


def _previous_word_in_sentence(text: str, word_start: int) -> str:
    """The whitespace-separated word before the one starting at `word_start` (from its sentence's start); empty when
    there is none or when it ends with sentence-final punctuation (and closers): the word at `word_start` may then
    start the sentence."""
    end = word_start
    while end > 0 and is_blank(text[end - 1]):
        end -= 1
    if end == word_start and word_start > 0:
        return ""  # not separated by whitespace: no previous word of its own
    previous = _word_in_sentence_before(text, end)
    return "" if not previous or previous.rstrip(_CLOSING_CHARACTERS)[-1:] in ("", ".", "!", "?") else previous


def _word_in_sentence_before(text: str, position: int) -> str:
    """`_word_before`, cut after a glued sentence end inside it ("0.Dr" is "Dr" when "0." ends a sentence), so that
    a word's rules read the same from the sentence start as from the whole text."""
    run_start = position
    while run_start > 0 and not is_blank(text[run_start - 1]):
        run_start -= 1
    word_start = run_start
    for match in _GLUED_PERIOD.finditer(text, run_start, position):
        if match.end() < position and _is_glued_boundary(text, match.start()):
            word_start = match.end()
    return text[word_start:position].lstrip("([{\"'\u201c\u2018")


def _is_glued_boundary(text: str, period: int) -> bool:
    """Whether the period at `period`, directly followed by a capitalized word, ends a sentence ("mg/kg.The")."""
    next_position = period + 1
    if period == 0 or next_position + 1 >= len(text):
        return False
    if not (text[next_position].isupper() and text[next_position + 1].islower()):
        return False
    before = text[period - 1]
    if not (before.islower() or before.isdigit() or before in ")]}"):
        return False
    return not _is_abbreviation(text, period, next_position)


def _is_abbreviation(text: str, period: int, next_position: int) -> bool:
    """Whether the period at `period`, followed by the sentence-like start at `next_position`, belongs to the word
    before it (see the module docstring for the rules)."""
    word = _word_in_sentence_before(text, period)
    lowered = word.lower()
    if lowered in TITLES:
        return True
    next_word = _next_word(text, next_position)
    starter = next_word in SENTENCE_STARTERS
    if lowered in ABBREVIATIONS or _DOTTED_INITIALS.fullmatch(word):
        return not starter
    if lowered in NUMBER_ABBREVIATIONS and text[next_position].isdigit():
        return True
    if len(word) == 1 and word.isupper():
        # "E. coli", "J. Smith" are initials; "vitamin C. The", "gene A. Expression" end a sentence.
        previous = _previous_word_in_sentence(text, period - 1)
        return not starter and not previous[:1].islower()
    return False


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
        if match.group().startswith(".") and _is_abbreviation(text, match.start(), next_position):
            continue
        if match.start() > 0 and text[match.start() - 1] in _OPERATORS:
            continue  # "(P <. 001)": a number's decimal point, spaced off
        boundaries.append(punctuation_end)
    boundaries.extend(match.end() for match in _GLUED_PERIOD.finditer(text) if _is_glued_boundary(text, match.start()))
    return sorted(boundaries)


def _stripped_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """`(start, end)` narrowed to exclude leading and trailing whitespace; None when nothing is left."""
    while start < end and is_blank(text[start]):
        start += 1
    while end > start and is_blank(text[end - 1]):
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
