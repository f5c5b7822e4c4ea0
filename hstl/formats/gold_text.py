"""Gold running text: documents as plain text with gold mention spans (characters) and, where known, gold sentence
starts, for checking that tagging text (sentence splitting, tokenization, windowing) scores as tagging the corpus's
own sentences does (`hstl.evaluation.compare_text_and_conll`).

Two sources:

- a PubTator file (`read_pubtator_gold`), e.g. the NCBI disease corpus's `NCBItestset_corpus.txt`: passages and
  mention lines `PMID<TAB>start<TAB>end<TAB>text<TAB>type<TAB>id`, offsets in the document's frame (the abstract
  starts one character after the title's end). Relation lines (`PMID<TAB>CID<TAB>...`) are skipped. Gold sentence
  starts come from the corpus's CoNLL split when its sentences spell the document (`align_sentence_starts`);
- a CoNLL split (`documents_from_conll`): each sentence detokenized (`detokenize`), consecutive sentences grouped into
  pseudo-abstracts joined by one space; mentions from the IOB2 labels; sentence starts are the corpus's.

The reconstruction's spacing is inferred, not read: the corpora split every non-alphanumeric character off as a token
(`text_hstl`), so "IL-2", "IL - 2" and "IL -2" all give the same tokens. `detokenize` writes each sentence as edited
English biomedical text is usually spaced (the rules are on `detokenize`). The real text has other spacing in places
(the NCBI test set writes "58. 3%", "(P <. 0001)", "> 10, 000" and "J. B."), and its sentence boundaries are where
the real text has them, which the reconstruction takes from the corpus's sentence splitter. The reconstruction
measures the splitter on the corpus's boundaries, with text that tokenizes back to the corpus's exact tokens.

Stdlib only (plus the sibling `labels_hstl` and `text_hstl`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from labels_hstl import extract_chunks
from text_hstl import is_blank
from .common import CorpusFormatError, PathLike
from .conll import Sentence
from .pubtator import iter_pubtator_documents

SENTENCES_PER_PSEUDO_ABSTRACT = 10
"""Sentences per reconstructed document: about an abstract's (the NCBI test set: 940 sentences in 100 abstracts)."""

NO_SPACE_BEFORE = frozenset(".,;:)]}%?!+")
"""Tokens written against the token before them ("cells, (A-T) 5% CD4+")."""
NO_SPACE_AFTER = frozenset("([{")
"""Tokens written against the token after them."""
JOINED = frozenset("-/'")
"""Tokens written against both neighbours: "ataxia-telangiectasia", "BACKGROUND/AIMS", "Crohn's"."""


@dataclass
class GoldPassage:
    """A passage of a gold document: its text and where it starts in the document's frame."""

    text: str
    offset: int


@dataclass
class GoldDocument:
    """A document of running text with its gold mentions; offsets are characters in the document's frame.

    Attributes:
        name: PMID, or `<file>:<first sentence>-<last sentence>` (1-based) for a reconstruction.
        passages: in order; a sentence never spans two.
        mentions: `(start, end, type)`, end exclusive, sorted.
        sentence_starts: where gold sentences start, or None when unknown.
        line: the file line the document starts at.
    """

    name: str
    passages: list[GoldPassage]
    mentions: list[tuple[int, int, str]]
    sentence_starts: list[int] | None
    line: int
    mention_lines: list[int] = field(default_factory=list)
    """File line of each mention (same order), for messages."""


def _space_before(tokens: Sequence[str], index: int) -> bool:
    """Whether a space separates `tokens[index]` from the token before it (see `detokenize`)."""
    before, token = tokens[index - 1], tokens[index]
    if token in NO_SPACE_BEFORE or token in JOINED or before in NO_SPACE_AFTER or before in JOINED:
        return False
    if before == "." and index >= 2:
        two_before = tokens[index - 2]
        if token[:1].isdigit() and not two_before.isalpha():
            return False  # "0.05", "q11.2", "P =.01" (but "Fig. 2", "no. 5")
        if len(two_before) == 1 and two_before.isalpha() and len(token) == 1 and token.isalpha():
            return False  # "i.e", "U.S"
    return True


def detokenize(tokens: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """One sentence's tokens as text, with each token's `(start, end)` in it.

    Tokens are separated by one space, except: none before `. , ; : ) ] } % ? ! +`, none after `( [ {`, none on
    either side of `-`, `/` and `'`, none after a `.` before a number unless a word of letters precedes the `.`
    ("0.05", "q11.2", "P =.01", but "Fig. 2"), none around a `.` between two single letters ("i.e.", "U.S."). No rule joins two letter-or-digit tokens, so `text_hstl.tokenize` gives the tokens back.
    """
    pieces, spans, position = [], [], 0
    for index, token in enumerate(tokens):
        if index and _space_before(tokens, index):
            pieces.append(" ")
            position += 1
        pieces.append(token)
        spans.append((position, position + len(token)))
        position += len(token)
    return "".join(pieces), spans


FINAL_PUNCTUATION = frozenset(".!?")
"""A sentence whose last two tokens hold none of these ends a title or an abstract (see `documents_from_conll`)."""


def _pseudo_abstracts(sentences: Sequence[Sentence], size: int):
    """`(index of the first sentence, sentences)` of each pseudo-abstract: `size` consecutive sentences, or fewer
    when one ends without final punctuation."""
    first = 0
    while first < len(sentences):
        last = first
        while last - first + 1 < size and last + 1 < len(sentences) and \
                FINAL_PUNCTUATION.intersection(sentences[last].tokens[-2:]):
            last += 1
        yield first, sentences[first : last + 1]
        first = last + 1


def documents_from_conll(sentences: Sequence[Sentence], source: str,
                         sentences_per_document: int = SENTENCES_PER_PSEUDO_ABSTRACT) -> list[GoldDocument]:
    """Labelled sentences as pseudo-abstracts of `sentences_per_document` consecutive sentences, each one passage
    of detokenized sentences joined by one space, with the sentences' mentions and starts (see the module docstring).

    A sentence without final punctuation (`FINAL_PUNCTUATION` in its last two tokens) ends its pseudo-abstract: in
    the corpora such a sentence is a title or the end of an abstract, which the real text follows with a passage
    break, not with another sentence of the same paragraph.

    Raises:
        ValueError: for `sentences_per_document` below 1, or (naming the sentence's line) an unlabelled sentence.
    """
    if sentences_per_document < 1:
        raise ValueError(f"sentences_per_document: expected a positive number, got {sentences_per_document}")
    documents = []
    for first, group in _pseudo_abstracts(sentences, sentences_per_document):
        pieces, mentions, starts, position = [], [], [], 0
        for sentence in group:
            if sentence.labels is None:
                raise ValueError(f"{source}:{sentence.line}: expected a labelled sentence, got none")
            text, spans = detokenize(sentence.tokens)
            if pieces:
                pieces.append(" ")
                position += 1
            starts.append(position)
            mentions.extend((position + spans[start][0], position + spans[end - 1][1], entity_type)
                            for entity_type, start, end in extract_chunks(sentence.labels))
            pieces.append(text)
            position += len(text)
        name = f"{source}:{first + 1}-{first + len(group)}"
        documents.append(GoldDocument(name, [GoldPassage("".join(pieces), 0)], sorted(mentions), starts,
                                      group[0].line, [group[0].line] * len(mentions)))
    return documents


def _mention(path: PathLike, line_number: int, line: str, text: str) -> tuple[int, int, str] | None:
    """The mention of an annotation line, None for a relation line; raises CorpusFormatError for a bad one."""
    fields = line.split("\t")
    if len(fields) < 5 or not fields[1].isdigit():
        return None  # a relation line: PMID<TAB>CID<TAB>...
    if not fields[2].isdigit():
        raise CorpusFormatError(path, line_number, "expected an end offset (a number) in the third column",
                                repr(fields[2]))
    start, end = int(fields[1]), int(fields[2])
    if not start < end <= len(text) or text[start:end] != fields[3]:
        found = repr(text[start:end]) if start < end <= len(text) else "offsets outside the document"
        raise CorpusFormatError(path, line_number, f"expected the mention text {fields[3]!r} at characters "
                                f"{start}-{end} of the document", found)
    return start, end, fields[4]


def read_pubtator_gold(path: PathLike) -> list[GoldDocument]:
    """The documents of a PubTator file with their mentions (sentence starts unknown: `align_sentence_starts`).

    Raises:
        CorpusFormatError: naming the file and line, for a malformed file (`iter_pubtator_documents`) or a mention
            line whose offsets are not numbers or do not hold its text.
    """
    documents = []
    for document in iter_pubtator_documents(path):
        passages = [GoldPassage(passage.text, passage.offset) for passage in document.passages]
        text = "\n".join(passage.text for passage in document.passages)  # passage i starts at its offset
        mentions = []
        for line_number, line in document.annotation_lines:
            mention = _mention(path, line_number, line, text)
            if mention is not None:
                mentions.append((*mention, line_number))
        mentions.sort()
        documents.append(GoldDocument(document.pmid, passages, [mention[:3] for mention in mentions], None,
                                      document.line, [mention[3] for mention in mentions]))
    return documents


def _non_blank(text: str, offset: int = 0) -> tuple[str, list[int]]:
    """The characters of `text` that are not blank (`text_hstl.is_blank`), and where each is (plus `offset`)."""
    positions = [offset + index for index, character in enumerate(text) if not is_blank(character)]
    return "".join(text[position - offset] for position in positions), positions


def align_sentence_starts(documents: Sequence[GoldDocument], sentences: Sequence[Sentence]) -> int:
    """Fills the `sentence_starts` of documents whose non-blank characters are those of consecutive `sentences`
    (the same corpus tokenized into sentences, in any document order), from where those sentences start.

    Returns:
        How many documents were aligned; the others keep `sentence_starts` None.
    """
    corpus_characters, sentence_start_at = [], {}
    position = 0
    for sentence in sentences:
        sentence_start_at[position] = True
        characters = "".join(sentence.tokens)
        corpus_characters.append(characters)
        position += len(characters)
    corpus = "".join(corpus_characters)
    aligned = 0
    for document in documents:
        characters, positions = "", []
        for passage in document.passages:
            passage_characters, passage_positions = _non_blank(passage.text, passage.offset)
            characters += passage_characters
            positions += passage_positions
        found = corpus.find(characters) if characters else -1
        while found >= 0 and not (found in sentence_start_at and
                                  (found + len(characters) in sentence_start_at or found + len(characters) == len(corpus))):
            found = corpus.find(characters, found + 1)
        if found < 0:
            continue
        document.sentence_starts = sorted(positions[start - found] for start in sentence_start_at
                                          if found <= start < found + len(characters))
        aligned += 1
    return aligned
