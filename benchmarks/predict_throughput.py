"""Prediction cost of HSTL's CRF decoding and of tagging with all 14 heads at once.

    python benchmarks/predict_throughput.py                               # all three ratios, a few minutes
    python benchmarks/predict_throughput.py --only crf_vs_argmax          # one ratio (and only its variants)
    python benchmarks/predict_throughput.py --quick                       # smoke test

All variants tag the same length-sorted batches of real test sentences (windowed and padded by the package's own
`encode_sentences` and `HSTLDataCollator`, as `hstl.inference` batches them) under `torch.inference_mode`, with the
pretrained MiniLM-L6 encoder:

    argmax          transformers' `AutoModelForTokenClassification` (a `BertForTokenClassification` on the same
                    encoder weights), argmax over labels, read at each word's first sub-token
    crf_one_head    `HSTLModel.tag(tasks=[one task])`: family layer, emission layer, batched Viterbi
    crf_all_heads   `HSTLModel.tag()`: all 14 heads from one encoder pass
    crf_14_passes   `HSTLModel.tag(tasks=[task])` once per task: 14 encoder passes

Ratios (last line `all_heads_vs_one` unless `--only` names another):
    RATIO crf_vs_argmax           words/s of crf_one_head over words/s of argmax (target >= 0.9)
    RATIO all_heads_vs_14_passes  time of crf_all_heads over time of crf_14_passes
    RATIO all_heads_vs_one        time of crf_all_heads over time of crf_one_head (target <= 1.3)
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable

import torch
from transformers import AutoModelForTokenClassification

import _common
from modeling_hstl import PAD_LABEL_ID, HSTLModel


FULL = {"num_sentences": 192, "batch_size": 64, "max_length": 128, "rounds": 5, "rounds_14_passes": 2}
QUICK = {"num_sentences": 8, "batch_size": 4, "max_length": 48, "rounds": 1, "rounds_14_passes": 1}

RATIO_VARIANTS = {
    "crf_vs_argmax": ("argmax", "crf_one_head"),  # time(argmax) / time(crf) = words/s of crf over words/s of argmax
    "all_heads_vs_14_passes": ("crf_all_heads", "crf_14_passes"),
    "all_heads_vs_one": ("crf_all_heads", "crf_one_head"),
}
"""Each ratio is median round time of its first variant over that of its second; lines are printed in this order."""

SEPARATE_RATIOS = ("all_heads_vs_14_passes",)
"""Ratios timed in a second interleaved measurement with fewer rounds: a round of 14 passes costs 14 single rounds."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _common.add_common_arguments(parser)
    parser.add_argument("--only", choices=list(RATIO_VARIANTS), default=None,
                        help="Measure only this ratio's two variants and print only its RATIO line.")
    parser.add_argument("--batch_size", type=int, default=None, help="Windows per batch (default 64, as evaluation).")
    parser.add_argument("--rounds_14_passes", type=int, default=None,
                        help="Timed rounds of the all_heads_vs_14_passes measurement (default 2).")
    parser.add_argument("--num_sentences", type=int, default=None, help="Sentences tagged per round (default 192).")
    return parser.parse_args()


def argmax_word_predictions(logits: torch.Tensor, word_start_positions: torch.LongTensor) -> torch.LongTensor:
    """Label ids of each word read at its first sub-token, `(batch_size, num_words)`, -100 at padding words."""
    # shape: (batch_size, seq_len)
    token_predictions = logits.argmax(dim=-1)
    word_predictions = token_predictions.gather(1, word_start_positions.clamp(min=0))
    return word_predictions.masked_fill(word_start_positions < 0, PAD_LABEL_ID)


def tagging_variants(
    model: HSTLModel, token_classifier, batches: list[dict], one_task: str
) -> dict[str, list[Callable[[], None]]]:
    """Per variant (see the module docstring), one function per batch that tags it."""
    encoder_keys = ("input_ids", "attention_mask", "token_type_ids")

    def argmax(batch: dict) -> None:
        logits = token_classifier(**{key: batch[key] for key in encoder_keys if key in batch}).logits
        argmax_word_predictions(logits, batch["word_start_positions"])

    def crf_one_head(batch: dict) -> None:
        model.tag(**batch, tasks=[one_task])

    def crf_all_heads(batch: dict) -> None:
        model.tag(**batch)

    def crf_14_passes(batch: dict) -> None:
        for task_name in model.config.task_names:
            model.tag(**batch, tasks=[task_name])

    return {
        variant.__name__: [functools.partial(variant, batch) for batch in batches]
        for variant in (argmax, crf_one_head, crf_all_heads, crf_14_passes)
    }


def measure_ratios(
    all_variants: dict[str, list[Callable[[], None]]],
    ratios: list[str],
    rounds: int,
    num_words: int,
    warmup_rounds: int,
) -> dict[tuple[str, str], float]:
    """Median round seconds of the variants of `ratios`, timed side by side; keyed by (ratio, variant)."""
    if not ratios:
        return {}
    names = list(dict.fromkeys(variant for ratio in ratios for variant in RATIO_VARIANTS[ratio]))
    seconds = _common.time_interleaved({name: all_variants[name] for name in names}, rounds, warmup_rounds)
    print(f"# timed side by side for {', '.join(ratios)}, {rounds} rounds:")
    for name in names:
        print(f"# {name}: {num_words / seconds[name]:.1f} words/s (median round {seconds[name]:.2f} s)")
    return {(ratio, name): seconds[name] for ratio in ratios for name in RATIO_VARIANTS[ratio]}


def main() -> None:
    args = parse_args()
    settings = {**(QUICK if args.quick else FULL)}
    settings.update({key: value for key in ("batch_size", "num_sentences", "rounds", "rounds_14_passes")
                     if (value := getattr(args, key)) is not None})
    _common.setup_run(args)
    tokenizer = _common.load_tokenizer()
    sentences = _common.load_sentences("test", settings["num_sentences"])
    batches = _common.collate_batches(tokenizer, sentences, settings["batch_size"], settings["max_length"],
                                      with_labels=False, length_sorted=True)
    tasks = _common.paper_task_dicts()
    one_task = tasks[1]
    model = HSTLModel.from_encoder(str(_common.minilm_path()), tasks=tasks).eval()
    # Same pretrained encoder weights; a fresh classifier with the one task's label count.
    token_classifier = AutoModelForTokenClassification.from_pretrained(
        _common.minilm_path(), num_labels=len(one_task["labels"])
    ).eval()
    ratios = list(RATIO_VARIANTS) if args.only is None else [args.only]
    all_variants = tagging_variants(model, token_classifier, batches, one_task["name"])
    num_words = _common.count_words(batches)
    print(f"# {len(tasks)} heads; one head = {one_task['name']}; {len(batches)} batches of <= {settings['batch_size']} "
          f"windows ({num_words} words) per round; {settings['rounds']} rounds ({settings['rounds_14_passes']} for "
          f"14 passes); MiniLM-L6 encoder")
    with torch.inference_mode():
        seconds = measure_ratios(all_variants, [ratio for ratio in ratios if ratio not in SEPARATE_RATIOS],
                                 settings["rounds"], num_words, warmup_rounds=1)
        separate = [ratio for ratio in ratios if ratio in SEPARATE_RATIOS]
        if separate:
            for tag_with_all_heads in all_variants["crf_all_heads"]:  # a warm-up round of 14 passes would cost minutes
                tag_with_all_heads()
            seconds.update(measure_ratios(all_variants, separate, settings["rounds_14_passes"], num_words,
                                          warmup_rounds=0))
    for ratio in ratios:
        numerator, denominator = RATIO_VARIANTS[ratio]
        _common.print_ratio(ratio, seconds[ratio, numerator] / seconds[ratio, denominator])


if __name__ == "__main__":
    main()
