#!/usr/bin/env python
"""Builds the small corpus sample shipped in `hstl/sample_data/` from the full BioNER corpora.

For each corpus and split it draws, with a fixed seed, a fixed number of sentences of at most `--max-length` tokens,
about `--mention-share` of them among sentences that contain at least one mention (so that a demo run learns
something), keeps them in corpus order, and writes them in canonical form with `hstl.data.write_conll`. It then
writes `README.md` (attribution, licence, how the sample was drawn, per-file counts) and `LICENSE` beside them.

    python scripts/make_sample.py --source ../shared/data/bioner --output hstl/sample_data

Running it again with the same arguments on the same corpora reproduces the files byte for byte.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from hstl.data import Sentence, read_conll, sample_data_dir, write_conll
from labels_hstl import extract_chunks

DEFAULT_CORPORA = ("BC5CDR-chem", "BC5CDR-disease", "NCBI-disease", "BC2GM", "linnaeus")
DEFAULT_SIZES = {"train": 400, "devel": 100, "test": 100}
DEFAULT_SOURCE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bioner"

CORPUS_CITATIONS = {
    "BC5CDR-chem": "Li et al. (2016), BioCreative V CDR task corpus, Database 2016:baw068 (chemical mentions)",
    "BC5CDR-disease": "Li et al. (2016), BioCreative V CDR task corpus, Database 2016:baw068 (disease mentions)",
    "NCBI-disease": "Doğan, Leaman and Lu (2014), NCBI disease corpus, J. Biomedical Informatics 47:1-10",
    "BC2GM": "Smith et al. (2008), Overview of BioCreative II gene mention recognition, Genome Biology 9(Suppl 2):S2",
    "linnaeus": "Gerner, Nenadic and Bergman (2010), LINNAEUS: a species name identification system, "
    "BMC Bioinformatics 11:85",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder of <corpus>/{train,devel,test}.tsv")
    parser.add_argument("--output", type=Path, default=sample_data_dir(), help="folder to write the sample into")
    parser.add_argument("--corpora", nargs="+", default=list(DEFAULT_CORPORA), help="corpora to sample")
    parser.add_argument("--seed", type=int, default=2022, help="random seed; each corpus and split derives its own")
    parser.add_argument("--train-size", type=int, default=DEFAULT_SIZES["train"], help="sentences drawn from train")
    parser.add_argument("--devel-size", type=int, default=DEFAULT_SIZES["devel"], help="sentences drawn from devel")
    parser.add_argument("--test-size", type=int, default=DEFAULT_SIZES["test"], help="sentences drawn from test")
    parser.add_argument("--max-length", type=int, default=60, help="longest sentence, in tokens, that may be drawn")
    parser.add_argument(
        "--mention-share", type=float, default=0.7, help="share of drawn sentences holding at least one mention"
    )
    return parser.parse_args()


def count_mentions(sentences: list[Sentence]) -> int:
    """Mentions as conlleval counts them (an I-X after O opens one)."""
    return sum(len(extract_chunks(sentence.labels or [])) for sentence in sentences)


def draw_sentences(
    sentences: list[Sentence], size: int, max_length: int, mention_share: float, rng: random.Random
) -> list[Sentence]:
    """Draws `size` sentences of at most `max_length` tokens, `round(size * mention_share)` of them with a mention
    when there are enough (the other pool makes up any shortfall), returned in corpus order."""
    eligible = [index for index, sentence in enumerate(sentences) if len(sentence.tokens) <= max_length]
    if len(eligible) < size:
        raise ValueError(f"expected at least {size} sentences of <= {max_length} tokens, got {len(eligible)}")
    has_mention = {index: bool(extract_chunks(sentences[index].labels or [])) for index in eligible}
    with_mention = [index for index in eligible if has_mention[index]]
    without_mention = [index for index in eligible if not has_mention[index]]
    wanted_with = min(round(size * mention_share), len(with_mention))
    wanted_with = max(wanted_with, size - len(without_mention))
    chosen = rng.sample(with_mention, wanted_with) + rng.sample(without_mention, size - wanted_with)
    return [sentences[index] for index in sorted(chosen)]


def sample_corpus(source: Path, output: Path, corpus: str, args: argparse.Namespace) -> dict[str, dict[str, int]]:
    """Samples every split of one corpus into `output/corpus`; returns split -> counts for the README."""
    sizes = {"train": args.train_size, "devel": args.devel_size, "test": args.test_size}
    counts = {}
    (output / corpus).mkdir(parents=True, exist_ok=True)
    for split, size in sizes.items():
        sentences = read_conll(source / corpus / f"{split}.tsv")
        # A string seed is hashed deterministically (random.seed version 2), independent of PYTHONHASHSEED.
        rng = random.Random(f"{args.seed}/{corpus}/{split}")
        drawn = draw_sentences(sentences, size, args.max_length, args.mention_share, rng)
        # The sample is not a run of whole documents, so no document markers.
        drawn = [Sentence(s.tokens, s.labels, s.line, starts_document=False) for s in drawn]
        write_conll(output / corpus / f"{split}.tsv", drawn)
        counts[split] = {
            "sentences": len(drawn),
            "tokens": sum(len(sentence.tokens) for sentence in drawn),
            "mentions": count_mentions(drawn),
            "with_mention": sum(1 for sentence in drawn if extract_chunks(sentence.labels or [])),
        }
    return counts


def readme_text(all_counts: dict[str, dict[str, dict[str, int]]], args: argparse.Namespace) -> str:
    """The sample's README: what it is, where it comes from, its licence, how it was drawn, and its counts."""
    rows = [
        f"| {corpus} | {split} | {c['sentences']} | {c['tokens']} | {c['mentions']} | {c['with_mention']} |"
        for corpus, splits in all_counts.items()
        for split, c in splits.items()
    ]
    citations = [f"- {corpus}: {CORPUS_CITATIONS.get(corpus, 'see the source collection')}" for corpus in all_counts]
    command = (
        f"python scripts/make_sample.py --seed {args.seed} --train-size {args.train_size} "
        f"--devel-size {args.devel_size} --test-size {args.test_size} --max-length {args.max_length} "
        f"--mention-share {args.mention_share} --corpora {' '.join(all_counts)}"
    )
    return "\n".join(
        [
            "# HSTL sample data",
            "",
            "Small samples of public biomedical NER corpora, for demos, docs and quick tests. They are far too small",
            "to measure anything: use the full corpora for results.",
            "",
            "Layout and format: `<corpus>/{train,devel,test}.tsv`, one `token<TAB>label` line per token, IOB2 labels,",
            "a blank line after every sentence, UTF-8 (read them with `hstl.data.read_split_dir`; the folder is",
            "`hstl.data.sample_data_dir()`).",
            "",
            "## Source and licence",
            "",
            "The sentences are taken unchanged from the corpus collection of Crichton, Pyysalo, Chiu and Korhonen,",
            '"A neural network multi-task learning approach to biomedical named entity recognition", BMC',
            "Bioinformatics 18:368 (2017), repository cambridgeltl/MTL-Bioinformatics-2016 (data/ folder, `*-IOB`",
            "variants), which redistributes them under the Creative Commons Attribution 4.0 International licence",
            "(CC BY 4.0, https://creativecommons.org/licenses/by/4.0/); see `LICENSE`. These samples are distributed",
            "under the same licence. Changes: only a subset of sentences is kept (see below); tokens and labels are",
            "as in the collection.",
            "",
            "Cite the original corpus papers when you use this data:",
            "",
            *citations,
            "",
            "## How the sample was drawn",
            "",
            f"`scripts/make_sample.py` with seed {args.seed} (each corpus and split uses its own generator seeded with",
            f'`"<seed>/<corpus>/<split>"`). It draws {args.train_size} train, {args.devel_size} devel and '
            f"{args.test_size} test sentences",
            f"per corpus, each of at most {args.max_length} tokens, {args.mention_share:.0%} of them among sentences "
            "holding at least one",
            "mention and the rest among sentences holding none, and keeps them in corpus order. Regenerate with:",
            "",
            "```",
            command,
            "```",
            "",
            "## Counts",
            "",
            "Mentions are counted as conlleval does (an `I-X` after `O` opens a mention).",
            "",
            "| corpus | split | sentences | tokens | mentions | sentences with a mention |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )


LICENSE_TEXT = """\
The corpus samples in this folder are licensed under the Creative Commons Attribution 4.0 International licence
(CC BY 4.0): https://creativecommons.org/licenses/by/4.0/ (full legal code:
https://creativecommons.org/licenses/by/4.0/legalcode).

They are subsets of the corpora redistributed under CC BY 4.0 by Crichton, Pyysalo, Chiu and Korhonen (2017),
https://github.com/cambridgeltl/MTL-Bioinformatics-2016. Attribution: see README.md in this folder for the source
collection, the original corpus papers to cite, and the changes made (sentence selection only).

This licence covers the data in this folder only, not the HSTL code, which is under the Apache License 2.0.
"""


def main() -> None:
    args = parse_args()
    all_counts = {corpus: sample_corpus(args.source, args.output, corpus, args) for corpus in args.corpora}
    (args.output / "README.md").write_text(readme_text(all_counts, args), encoding="utf-8", newline="\n")
    (args.output / "LICENSE").write_text(LICENSE_TEXT, encoding="utf-8", newline="\n")
    for corpus, splits in all_counts.items():
        summary = ", ".join(f"{split} {c['sentences']}/{c['mentions']}" for split, c in splits.items())
        print(f"{corpus}: {summary} (sentences/mentions)")


if __name__ == "__main__":
    main()
