"""The statistics of the comparison's report, each pinned against exact enumeration or a case computed by hand (the
expected values are written out here, never computed by the code under test)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hstl.bootstrap import block_starts, paired_bootstrap, unit_counts
from hstl.experiments.report import format_markdown
from hstl.experiments.statistics import (
    f_cdf, f_quantile, format_p_value, holm, holm_with_bounds, permutation_test, summarize, t_two_sided_p,
    variance_ratio_test, welch_t_test,
)


def test_holm_multiplies_the_ith_smallest_by_m_minus_i_and_keeps_the_running_maximum():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    assert holm([0.2]) == [0.2]


def test_holm_over_bootstrap_zeros_is_an_upper_bound():
    # 0 stands for "below 2/10000": 2e-4 x 2 = 4e-4 at most, and 0.01 x 1 stays exact
    (zero, zero_bound), (other, other_bound) = holm_with_bounds([0.0, 0.01], 10_000)
    assert (zero, zero_bound) == (pytest.approx(4e-4), True)
    assert (other, other_bound) == (pytest.approx(0.01), False)


def test_permutation_test_enumerates_every_split_of_three_against_three():
    # 20 splits of 6 runs into 3 + 3; only the observed split and its mirror are as extreme: 2 / 20
    result = permutation_test([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert (result["difference"], result["p_two_sided"], result["num_splits"]) == (-3.0, 0.1, 20)
    assert result["smallest_p"] == 0.1
    # sums of 3 of {1..6} at most 7 ({1,2,3}, {1,2,4}) or at least 14 ({3,5,6}, {4,5,6}): 4 / 20
    assert permutation_test([1.0, 2.0, 4.0], [3.0, 5.0, 6.0])["p_two_sided"] == 0.2
    assert permutation_test([1.0, 1.0], [1.0, 1.0])["p_two_sided"] == 1.0  # no difference: every split as extreme


def test_t_distribution_against_closed_forms():
    # df = 2: P(|T| >= t) = 1 - t / sqrt(t^2 + 2); at t = 2: 1 - 2 / sqrt(6)
    assert t_two_sided_p(2.0, 2) == pytest.approx(0.18350341907227385, rel=1e-9)
    assert t_two_sided_p(4.302652729911275, 2) == pytest.approx(0.05, rel=1e-9)  # the tabled 97.5 % point
    assert t_two_sided_p(1.0, 1) == pytest.approx(0.5, rel=1e-9)  # Cauchy: P(|T| >= 1) = 1/2
    assert t_two_sided_p(0.0, 7) == 1.0


def test_welch_t_test_by_hand():
    # means 2 and 5, variances 1 and 1: t = -3 / sqrt(1/3 + 1/3) = -3.6742, df = (2/3)^2 / (2 (1/3)^2 / 2) = 4;
    # df = 4: P(|T| >= t) = 1 - 1.5 x (1 - x^2 / 3) with x = t / sqrt(t^2 + 4)
    result = welch_t_test([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert result["t"] == pytest.approx(-3.6742346141747673)
    assert result["df"] == pytest.approx(4.0)
    assert result["p_two_sided"] == pytest.approx(0.02131164112875661, rel=1e-9)
    assert welch_t_test([1.0], [2.0, 3.0]) is None and welch_t_test([1.0, 1.0], [2.0, 2.0]) is None


def test_f_test_against_the_closed_form_of_two_and_two_degrees_of_freedom():
    # F(2, 2): P(F <= x) = x / (1 + x); the 97.5 % point is 39, the 2.5 % point 1/39
    assert f_cdf(3.0, 2, 2) == pytest.approx(0.75, rel=1e-9)
    assert f_quantile(0.975, 2, 2) == pytest.approx(39.0, rel=1e-8)
    # variances 1 and 4: ratio 0.25, P(F <= 0.25) = 0.2, two-sided 0.4
    result = variance_ratio_test([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])
    assert result["ratio"] == pytest.approx(0.25)
    assert result["p_two_sided"] == pytest.approx(0.4, rel=1e-9)
    assert (result["critical_low"], result["critical_high"]) == (pytest.approx(1 / 39, rel=1e-7),
                                                                  pytest.approx(39.0, rel=1e-8))
    # the tabled one-sided 5 % point of F(2, 2) is 19
    assert f_quantile(0.95, 2, 2) == pytest.approx(19.0, rel=1e-8)


@pytest.mark.parametrize(("p", "samples", "is_bound", "expected"), [
    (0.0, 10_000, False, "< 2e-4"),       # no sample of 10,000 on the other side: two-sided below 2/10,000
    (0.0, 1_000, False, "< 2e-3"),
    (0.0004, 10_000, False, "0.0004"),    # multiples of 2e-4 need 4 decimals
    (0.003, 10_000, True, "< 0.0030"),    # a Holm product of a bound
    (0.1, None, False, "0.1"),            # an exact test: its own value
])
def test_p_values_are_printed_at_the_resolution_of_their_test(p, samples, is_bound, expected):
    assert format_p_value(p, samples, is_bound) == expected


def test_unit_counts_sum_the_sentences_of_each_document_or_block():
    counts = np.array([[1, 1, 1], [0, 1, 0], [2, 2, 3], [0, 0, 1], [1, 0, 0]])
    assert unit_counts(counts, [0, 2, 3]).tolist() == [[1, 2, 1], [2, 2, 3], [1, 0, 1]]
    assert block_starts(5, 2) == [0, 2, 4]
    for bad in ([1, 2], [0, 2, 2], [0, 5]):
        with pytest.raises(ValueError, match="unit_starts"):
            unit_counts(counts, bad)


def test_bootstrap_over_two_units_matches_the_enumeration_of_its_four_draws():
    # A: unit 1 all right (2 of 2), unit 2 wrong (0 of 1); B: unit 1 half (1 of 2), unit 2 right (1 of 1).
    # Draws of 2 units: {1,1} (1/4) A 1.0 vs B 0.5; {2,2} (1/4) A 0 vs B 1; {1,2} (1/2) A 2/3 vs B 2/3, a tie.
    # P(A - B <= 0) = 3/4 and P(A - B >= 0) = 3/4 exactly.
    a = unit_counts(np.array([[1, 1, 1], [1, 1, 1], [0, 1, 1]]), [0, 2])
    b = unit_counts(np.array([[1, 1, 1], [0, 1, 1], [1, 1, 1]]), [0, 2])
    result = paired_bootstrap(a, b, num_samples=20_000, seed=3)
    assert result.num_sentences == 2
    assert result.p_a_better == pytest.approx(0.75, abs=0.015)
    assert result.p_b_better == pytest.approx(0.75, abs=0.015)


def _write_cell(cells, method, corpus, seed, f1, counts, **extra):
    path = cells / method / corpus / f"seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"method": method, "corpus": corpus, "family": "F", "seed": seed, "test": {"f1": f1},
                                "test_counts": counts, **extra}))


def test_summary_tests_hstl_against_each_baseline_with_holm_units_and_seeds(tmp_path):
    cells = tmp_path / "cells"
    right, wrong = [1, 1, 1], [0, 1, 1]
    for seed, (hstl, single) in enumerate([(0.80, 0.70), (0.82, 0.71), (0.81, 0.72)], start=1):
        # corpus A: 25 sentences, no documents (blocks of 10: 3 units); HSTL right on 20, single-task on 10
        _write_cell(cells, "hstl", "A", seed, hstl, [right] * 20 + [wrong] * 5)
        _write_cell(cells, "single_task", "A", seed, single, [right] * 10 + [wrong] * 15)
        # corpus B: 6 sentences in 2 documents that -DOCSTART- lines mark
        _write_cell(cells, "hstl", "B", seed, hstl, [right] * 6, test_document_starts=[0, 3])
        _write_cell(cells, "single_task", "B", seed, single, [right] * 6)
    _write_cell(cells, "single_task_matched", "A", 1, 0.75, [right] * 15 + [wrong] * 10)
    summary = summarize(tmp_path)
    entry_a, entry_b = summary["corpora"]["A"], summary["corpora"]["B"]
    assert entry_a["unit_bootstrap_hstl_vs_single_task"]["1"]["unit"] == "block of 10 sentences"
    assert entry_a["unit_bootstrap_hstl_vs_single_task"]["1"]["num_sentences"] == 3
    assert entry_b["unit_bootstrap_hstl_vs_single_task"]["1"]["unit"] == "document"
    assert entry_b["unit_bootstrap_hstl_vs_single_task"]["1"]["num_sentences"] == 2
    family = summary["tests"]["families"]["bootstrap_hstl_vs_single_task"]
    assert family["members"] == [f"{corpus} seed {seed}" for corpus in "AB" for seed in (1, 2, 3)]
    # B's systems agree on every sentence: p = 1 for all three; Holm of a family of 6 keeps them at 1
    assert [entry_b["bootstrap_hstl_vs_single_task"][seed]["p_holm"] for seed in "123"] == [1.0, 1.0, 1.0]
    # HSTL 80, 82, 81 against 70, 71, 72: the observed split is the most extreme of 20, p = 2/20
    seed_level = entry_a["seed_level_hstl_vs_single_task"]
    assert seed_level["permutation"]["p_two_sided"] == 0.1
    assert seed_level["welch"]["df"] == pytest.approx(4.0)
    # t = 10 / sqrt(2/3) = 12.247 on 4 df: p = 1 - 1.5 x (1 - x^2 / 3), x = t / sqrt(t^2 + 4); A and B have the same
    # seeds' F1, so Holm over the two corpora doubles it for both
    assert seed_level["welch"]["p_two_sided"] == pytest.approx(0.0002552167494419555, rel=1e-6)
    assert seed_level["welch"]["p_holm"] == pytest.approx(0.000510433498883911, rel=1e-6)
    assert summary["tests"]["families"]["seed_level_hstl_vs_single_task_welch"]["members"] == ["A", "B"]
    # the matched control has one seed here: its bootstrap, its own family of one test; the seed-level test compares
    # the seeds both methods have, HSTL's seed 1 (80) against the control's (75), not HSTL's mean over three seeds (81)
    matched = entry_a["seed_level_hstl_vs_single_task_matched"]["permutation"]
    assert (matched["difference"], matched["p_two_sided"]) == (pytest.approx(5.0), 1.0)
    assert list(entry_a["bootstrap_hstl_vs_single_task_matched"]) == ["1"]
    assert summary["tests"]["families"]["bootstrap_hstl_vs_single_task_matched"]["size"] == 1
    assert "single_task_matched" in summary["methods"]
    markdown = format_markdown(summary)
    # per seed: F1 from the counts, difference, p over sentences and its Holm value, p over units and its Holm value
    assert "| B | 1 | 100.00 | 100.00 | +0.00 | 1.0000 | 1.0000 | 1.0000 | 1.0000 |" in markdown
    # A: no sample can favour single-task unless it draws none of the 10 sentences only HSTL gets right
    # ((15/25)^25 < 1e-5): "< 2e-4", and Holm's bound over the family of 6 is 6 x 2e-4
    assert "| A | 1 | 80.00 | 40.00 | +40.00 | < 2e-4 | < 0.0012 |" in markdown
    # per corpus: difference of means, permutation p (2/20) and Holm over A and B (0.1 x 2), Welch t (df)
    assert "| A | +10.00 | 0.1 | 0.2 | 12.25 (4.0) |" in markdown


def test_overview_counts_gains_seeds_and_significant_losses_by_hand(tmp_path):
    """Counts of the overview table, worked out by hand: A's three seeds (HSTL 20 of 25 sentences right against 10,
    then 10 against 20, then 11 against 12) and B's two seeds in common, 2 and 3 (equal; 13 against 12), with
    single-task's seed 1 of B (90) not paired."""
    cells = tmp_path / "cells"
    right, wrong = [1, 1, 1], [0, 1, 1]
    for seed, (hstl, single) in enumerate([(20, 10), (10, 20), (11, 12)], start=1):
        _write_cell(cells, "hstl", "A", seed, hstl / 25, [right] * hstl + [wrong] * (25 - hstl))
        _write_cell(cells, "single_task", "A", seed, single / 25, [right] * single + [wrong] * (25 - single))
    for seed, (hstl, single) in enumerate([(12, 12), (13, 12)], start=2):
        _write_cell(cells, "hstl", "B", seed, hstl / 25, [right] * hstl + [wrong] * (25 - hstl))
        _write_cell(cells, "single_task", "B", seed, single / 25, [right] * single + [wrong] * (25 - single))
    _write_cell(cells, "single_task", "B", 1, 0.90, [right] * 25)
    overview = summarize(tmp_path)["overview"]["single_task"]
    # A: (80 - 40) + (40 - 80) + (44 - 48) = -4 over 3 seeds; B over seeds 2 and 3 only: (0 + 4) / 2 = +2
    # (over all of single-task's seeds it would be 50 - 62 = -12; paired by position, (48 - 90 + 52 - 48) / 2 = -19)
    assert overview["mean_gain"] == {"A": pytest.approx(-4 / 3), "B": pytest.approx(2.0)}
    assert overview["corpora_above"] == 1
    # above: A seed 1, B seed 3; below: A seeds 2 and 3; B seed 2 is a tie, neither
    assert (overview["seeds"], overview["seeds_above"], overview["seeds_below"]) == (5, 2, 2)
    # A seed 2: single-task right on 10 sentences where HSTL is wrong, no sample without one of them favours HSTL
    # ((15/25)^25 < 1e-5): p < 2e-4, Holm's bound 5 x 2e-4; A seed 3 differs on one sentence: p far above 0.05
    assert overview["seeds_below_holm"] == 1
    # variances of A: HSTL 80, 40, 44 (var 485.33), single-task 40, 80, 48 (var 448): ratio 1.083, not rejected;
    # B over seeds 2 and 3: single-task 48, 48 has no spread, no test
    assert (overview["variance_tests"], overview["variance_rejected"]) == (1, 0)
    markdown = format_markdown(summarize(tmp_path))
    assert "| mean difference of test F1 x 100, lowest to highest corpus | -1.33 (A) to +2.00 (B) |" in markdown
    assert "| paired seeds where HSTL is above / below | 2 / 2 of 5 |" in markdown
    assert "| seeds where HSTL is below, significant after Holm | 1 of 2 |" in markdown
