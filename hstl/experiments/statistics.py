"""The summary of a comparison's finished cells and the tests on it.

Per target corpus: each method's test F1 x 100 per seed, its steps, wall time and convergence, the mean ± std table
with the gain over single-task, and these tests of HSTL against each single-task baseline (`single_task`, and
`single_task_matched` where its cells exist):

- the paired bootstrap over test sentences per seed (`hstl.bootstrap.paired_bootstrap`), with Holm-corrected p-values
  over its family: all the per-seed tests of the table against that baseline (5 targets x 3 seeds = 15 tests against
  single_task in the full comparison);
- the same bootstrap drawing whole documents when the corpus marks them (`-DOCSTART-`), otherwise blocks of
  `bootstrap_block_size` consecutive sentences, as a robustness check (sentences of one abstract are not independent);
- a seed-level test of the mean gain over the seeds both methods have: the seeds of each method are the sample. The
  exact two-sample permutation test over the seeds' F1 (every split of the n + m runs into groups of n and m, equally
  likely under "same method"), and Welch's t-test beside it. With 3 seeds against 3 there are 20 splits: the
  smallest two-sided permutation p-value is 2/20 = 0.1, so no corpus can reach 0.05 at this number of seeds, whatever
  its gain;
- the F-test of equal variance over seeds (two-sided, its 5 % critical value beside it), which a claim that one
  method is steadier than another needs.

p-values of a resampling test are printed at the resolution its samples give (`format_p_value`).
"""

from __future__ import annotations

import itertools
import math
import statistics
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..bootstrap import block_starts, paired_bootstrap, unit_counts
from .cells import cells_folder, local_run_dir, read_cells, validation_convergence
from .config import METHODS, ComparisonConfig

BASELINES = ("single_task", "single_task_matched")
ALPHA = 0.05


# ---------------------------------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------------------------------


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input's order: sort ascending, multiply the i-th smallest (from 0)
    by m - i, carry the running maximum, cap at 1. Rejecting where the adjusted value is below alpha controls the
    family-wise error rate at alpha."""
    order = sorted(range(len(p_values)), key=lambda index: p_values[index])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def permutation_test(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Exact two-sample permutation test of mean(a) - mean(b) over every split of the pooled values into groups of
    len(a) and len(b): the two-sided p-value is the share of splits whose |difference of means| is at least the
    observed one. `smallest_p` is the least p-value these sizes can give (2 / C(n + m, n) for distinct values)."""
    pooled, n = list(a) + list(b), len(a)
    if n < 1 or len(b) < 1:
        raise ValueError(f"expected at least one value in each group, got {len(a)} and {len(b)}")
    observed = statistics.fmean(a) - statistics.fmean(b)
    splits = list(itertools.combinations(range(len(pooled)), n))
    extreme = 0
    for chosen in splits:
        first = [pooled[index] for index in chosen]
        second = [pooled[index] for index in range(len(pooled)) if index not in chosen]
        # a relative tolerance: the observed split itself must count, whatever the rounding of its sums
        if abs(statistics.fmean(first) - statistics.fmean(second)) >= abs(observed) * (1 - 1e-9):
            extreme += 1
    return {"difference": observed, "p_two_sided": extreme / len(splits), "num_splits": len(splits),
            "smallest_p": min(1.0, 2 / len(splits))}


def regularized_beta(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction (modified Lentz; Press et al.,
    Numerical Recipes, 6.4), for the t and F distributions (scipy is not a dependency)."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x: expected a value in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_continued_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(1.0 - x, b, a) / b


def _beta_continued_fraction(x: float, a: float, b: float, tiny: float = 1e-300) -> float:
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 1000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= d * c
        if abs(d * c - 1.0) < 1e-15:
            return fraction
    raise ArithmeticError(f"the incomplete beta fraction did not converge for x={x}, a={a}, b={b}")


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with `df` degrees of freedom: I_{df / (df + t^2)}(df / 2, 1 / 2)."""
    return regularized_beta(df / (df + t * t), df / 2, 0.5)


def f_cdf(f: float, df1: float, df2: float) -> float:
    """P(F <= f) for Fisher's F with (df1, df2) degrees of freedom: I_{df1 f / (df1 f + df2)}(df1 / 2, df2 / 2)."""
    return 0.0 if f <= 0 else regularized_beta(df1 * f / (df1 * f + df2), df1 / 2, df2 / 2)


def f_quantile(probability: float, df1: float, df2: float) -> float:
    """The `probability` quantile of F(df1, df2), by bisection on `f_cdf` (to 1e-10 relative)."""
    low, high = 0.0, 1.0
    while f_cdf(high, df1, df2) < probability:
        high *= 2
    while high - low > 1e-10 * high:
        middle = (low + high) / 2
        low, high = (middle, high) if f_cdf(middle, df1, df2) < probability else (low, middle)
    return (low + high) / 2


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> dict[str, Any] | None:
    """Welch's t-test of mean(a) = mean(b) (unequal variances, Welch-Satterthwaite degrees of freedom); None with
    fewer than 2 values in a group or no spread in either."""
    if len(a) < 2 or len(b) < 2:
        return None
    share_a, share_b = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if share_a + share_b == 0:
        return None
    t = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(share_a + share_b)
    df = (share_a + share_b) ** 2 / (share_a ** 2 / (len(a) - 1) + share_b ** 2 / (len(b) - 1))
    return {"t": t, "df": df, "p_two_sided": t_two_sided_p(t, df)}


def variance_ratio_test(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA) -> dict[str, Any] | None:
    """Two-sided F-test of equal variances: `ratio` is var(a) / var(b), `p_two_sided` twice the smaller tail, and
    `critical_low` / `critical_high` the ratios beyond which the test rejects at `alpha` (F quantiles alpha/2 and
    1 - alpha/2 of (len(a) - 1, len(b) - 1)). None with fewer than 2 values in a group or no spread in b."""
    if len(a) < 2 or len(b) < 2 or statistics.variance(b) == 0:
        return None
    df1, df2 = len(a) - 1, len(b) - 1
    ratio = statistics.variance(a) / statistics.variance(b)
    below = f_cdf(ratio, df1, df2)
    return {"ratio": ratio, "df": [df1, df2], "p_two_sided": min(1.0, 2 * min(below, 1 - below)),
            "critical_low": f_quantile(alpha / 2, df1, df2), "critical_high": f_quantile(1 - alpha / 2, df1, df2)}


def p_resolution(num_samples: int) -> float:
    """The smallest two-sided p-value `paired_bootstrap` reports above 0: twice the one-sided 1 / num_samples."""
    return 2 / num_samples


def format_p_value(p: float, num_samples: int | None = None, is_bound: bool = False) -> str:
    """A p-value at the resolution its test gives. For a bootstrap of N samples (`num_samples`) the two-sided p is
    2 x (samples on the other side) / N, a multiple of 2/N: 0 means "fewer than one sample in N on the other side",
    so it is printed as "< 2/N" (e.g. "< 2e-4" at 10,000), and other values with the decimals that 2/N needs
    (4 at 10,000). `is_bound`: `p` is an upper bound (a Holm product of such a bound), printed "< p". Exact tests
    (`num_samples` None) print 4 significant digits."""
    if num_samples is not None and p == 0:
        return f"< {_short(p_resolution(num_samples))}"
    if num_samples is None:
        text = f"{p:.4g}"
    else:
        text = f"{p:.{max(0, math.ceil(-math.log10(p_resolution(num_samples))))}f}"
    return f"< {text}" if is_bound else text


def _short(value: float) -> str:
    """2e-4, not 2e-04 or 0.0002."""
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def holm_with_bounds(p_values: Sequence[float], num_samples: int) -> list[tuple[float, bool]]:
    """Holm over bootstrap p-values, where a 0 stands for "below the resolution": adjusted with 0 replaced by the
    resolution (an upper bound) and with 0 kept (a lower bound); where the two differ the adjusted value is only
    known to lie below the first: (value, is_bound)."""
    upper = holm([p if p > 0 else p_resolution(num_samples) for p in p_values])
    lower = holm(list(p_values))
    return [(high, high != low) for high, low in zip(upper, lower)]


# ---------------------------------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------------------------------


def summarize(output_dir: Path, config: ComparisonConfig | None = None,
              cells_dir: str | Path | None = None) -> dict[str, Any]:
    """Per target corpus: its family, each method's test F1 x 100 per seed, steps, wall seconds, convergence, and the
    tests of HSTL against each baseline; the mean ± std table with each method's gain over single-task; the Holm
    corrections over each family of tests, and how many cells are converged. Computed from the cell files only."""
    cells = read_cells(cells_folder(output_dir, cells_dir))
    if config is not None:
        families = {c.name: c.family for c in config.target_corpora()}
    else:
        families = {cell["corpus"]: cell.get("family") for cell in sorted(cells, key=lambda cell: cell["corpus"])}
    methods = [m for m in METHODS if any(cell["method"] == m for cell in cells)]
    samples = config.bootstrap_samples if config is not None else 10_000
    block_size = config.bootstrap_block_size if config is not None else 10
    corpora = {name: _corpus_summary(name, family, methods, cells, samples, block_size, Path(output_dir))
               for name, family in families.items()}
    families_of_tests = _correct_for_multiple_tests(corpora, samples)
    return {"corpora": corpora, "methods": methods,
            "table": {name: _table_rows(entry) for name, entry in corpora.items()}, "num_cells": len(cells),
            "convergence_counts": _convergence_counts(corpora, methods),
            "rerun_shifts": _rerun_shifts(corpora, methods),
            "stage1_reruns": _stage1_reruns(corpora),
            "overview": {baseline: overview for baseline in BASELINES
                         if (overview := _overview(corpora, baseline)) is not None},
            "tests": {"bootstrap_samples": samples, "p_resolution": p_resolution(samples),
                      "block_size": block_size, "alpha": ALPHA, "families": families_of_tests}}


def _corpus_summary(name: str, family: str | None, methods: list[str], cells: list[dict], bootstrap_samples: int,
                    block_size: int, output_dir: Path) -> dict[str, Any]:
    """One corpus of the summary: per method, lists in seed order; the tests of HSTL against each baseline."""
    by_method = {m: sorted((c for c in cells if c["corpus"] == name and c["method"] == m), key=lambda c: c["seed"])
                 for m in methods}
    by_method = {m: method_cells for m, method_cells in by_method.items() if method_cells}
    entry = {
        "family": family,
        "methods": {m: [100 * c["test"]["f1"] for c in method_cells] for m, method_cells in by_method.items()},
        "seeds": {m: [c["seed"] for c in method_cells] for m, method_cells in by_method.items()},
        "steps": {m: [c.get("completed_steps") for c in method_cells] for m, method_cells in by_method.items()},
        "wall_seconds": {m: [c.get("wall_seconds") for c in method_cells] for m, method_cells in by_method.items()},
        "convergence": {m: [c["convergence"] if "convergence" in c else
                            validation_convergence(local_run_dir(output_dir, c.get("run_dir")), name)
                            for c in method_cells]
                        for m, method_cells in by_method.items()},
        "budget_rounds": {m: [c.get("budget_round", 0) for c in method_cells] for m, method_cells in by_method.items()},
        "previous_rounds": {m: [c.get("previous_rounds", []) for c in method_cells]
                            for m, method_cells in by_method.items()},
        # The test F1 x 100 on this target of the stage 1 each HSTL cell was fine-tuned from.
        "hstl_stage1_test_f1": [None if c.get("stage1_test_f1") is None else 100 * c["stage1_test_f1"]
                                for c in by_method.get("hstl", [])],
    }
    for baseline in BASELINES:
        if baseline not in by_method or "hstl" not in by_method:
            continue
        paired = {c["seed"]: c for c in by_method[baseline]}
        sentence_tests, unit_tests = {}, {}
        for cell in by_method["hstl"]:
            other = paired.get(cell["seed"])
            if other is None or not cell.get("test_counts") or not other.get("test_counts"):
                continue
            counts_a, counts_b = np.asarray(cell["test_counts"]), np.asarray(other["test_counts"])
            sentence_tests[str(cell["seed"])] = paired_bootstrap(counts_a, counts_b, num_samples=bootstrap_samples,
                                                                 seed=cell["seed"]).to_dict()
            starts, unit = _resampling_units(cell, len(counts_a), block_size)
            unit_tests[str(cell["seed"])] = paired_bootstrap(
                unit_counts(counts_a, starts), unit_counts(counts_b, starts), num_samples=bootstrap_samples,
                seed=cell["seed"]).to_dict() | {"unit": unit}
        entry[f"bootstrap_hstl_vs_{baseline}"] = sentence_tests
        entry[f"unit_bootstrap_hstl_vs_{baseline}"] = unit_tests
        hstl_f1, baseline_f1 = _on_common_seeds(entry, "hstl", baseline)
        entry[f"seed_level_hstl_vs_{baseline}"] = {
            "permutation": permutation_test(hstl_f1, baseline_f1), "welch": welch_t_test(hstl_f1, baseline_f1),
            "variance_ratio": variance_ratio_test(hstl_f1, baseline_f1)}
    return entry


def _resampling_units(cell: dict, num_sentences: int, block_size: int) -> tuple[list[int], str]:
    """The documents of the test set when the cell recorded where they start, otherwise blocks of `block_size`."""
    starts = cell.get("test_document_starts")
    if starts:
        return ([0] if starts[0] != 0 else []) + list(starts), "document"
    return block_starts(num_sentences, block_size), f"block of {block_size} sentences"


def _correct_for_multiple_tests(corpora: dict[str, Any], num_samples: int) -> dict[str, Any]:
    """Adds `p_holm` (and `p_holm_is_bound`) to every test, Holm-corrected within its family: per baseline, all the
    per-seed sentence bootstraps of the table; all the per-seed unit bootstraps; the seed-level permutation tests of
    the corpora, and their Welch tests. Returns each family's members and how many of them are below alpha raw and
    after Holm."""
    families = {}
    for baseline in BASELINES:
        for kind in ("bootstrap", "unit_bootstrap"):
            key = f"{kind}_hstl_vs_{baseline}"
            members = [(corpus, seed, result) for corpus, entry in corpora.items()
                       for seed, result in entry.get(key, {}).items()]
            if not members:
                continue
            adjusted = holm_with_bounds([result["p_two_sided"] for _, _, result in members], num_samples)
            for (_, _, result), (p_holm, is_bound) in zip(members, adjusted):
                result["p_holm"], result["p_holm_is_bound"] = p_holm, is_bound
            families[key] = _family_record([f"{corpus} seed {seed}" for corpus, seed, _ in members],
                                           [r["p_two_sided"] for _, _, r in members], [p for p, _ in adjusted])
        key = f"seed_level_hstl_vs_{baseline}"
        members = [(corpus, entry[key]["permutation"]) for corpus, entry in corpora.items() if key in entry]
        if members:
            adjusted = holm([result["p_two_sided"] for _, result in members])
            for (_, result), p_holm in zip(members, adjusted):
                result["p_holm"] = p_holm
            families[key] = _family_record([corpus for corpus, _ in members],
                                           [r["p_two_sided"] for _, r in members], adjusted)
            welch = [(corpus, corpora[corpus][key]["welch"]) for corpus, _ in members
                     if corpora[corpus][key]["welch"] is not None]
            adjusted = holm([result["p_two_sided"] for _, result in welch])
            for (_, result), p_holm in zip(welch, adjusted):
                result["p_holm"] = p_holm
            families[f"{key}_welch"] = _family_record([corpus for corpus, _ in welch],
                                                      [r["p_two_sided"] for _, r in welch], adjusted)
    return families


def _overview(corpora: dict[str, Any], baseline: str) -> dict[str, Any] | None:
    """HSTL against `baseline` over all corpora, after Holm: per corpus the difference of mean test F1 x 100 over the
    seeds both have (the seed-level tests' difference); how many paired seeds HSTL is above and below on (by the
    sentence bootstrap's difference), how many of those below are significant after Holm, and how many F-tests reject
    equal seed variances at alpha. None when no corpus has both methods."""
    seed_level = {corpus: entry[f"seed_level_hstl_vs_{baseline}"] for corpus, entry in corpora.items()
                  if f"seed_level_hstl_vs_{baseline}" in entry}
    if not seed_level:
        return None
    gains = {corpus: tests["permutation"]["difference"] for corpus, tests in seed_level.items()}
    seeds = [result for entry in corpora.values()
             for result in entry.get(f"bootstrap_hstl_vs_{baseline}", {}).values()]
    below = [result for result in seeds if result["delta"] < 0]
    variance = [tests["variance_ratio"]["p_two_sided"] for tests in seed_level.values()
                if tests["variance_ratio"] is not None]
    return {"mean_gain": gains, "corpora_above": sum(gain > 0 for gain in gains.values()),
            "seeds": len(seeds), "seeds_above": sum(result["delta"] > 0 for result in seeds),
            "seeds_below": len(below), "seeds_below_holm": sum(result["p_holm"] < ALPHA for result in below),
            "variance_tests": len(variance), "variance_rejected": sum(p < ALPHA for p in variance),
            "variance_p_range": [min(variance), max(variance)] if variance else None}


def _family_record(members: list[str], raw: list[float], adjusted: list[float]) -> dict[str, Any]:
    return {"members": members, "size": len(members), "significant_raw": sum(p < ALPHA for p in raw),
            "significant_holm": sum(p < ALPHA for p in adjusted)}


def _convergence_counts(corpora: dict[str, Any], methods: list[str]) -> dict[str, dict[str, int]]:
    """Per method: how many of its cells early stopping ended (`converged`); how many of those also had their best
    validation F1 at least `patience` evaluations before the end (`best_patience_before_end`: early stopping counts
    only gains above its threshold, so a smaller gain can still move the best step closer to the end); out of how
    many cells."""
    counts = {}
    for method in methods:
        records = [record or {} for entry in corpora.values() for record in entry["convergence"].get(method, [])]
        converged = [record for record in records if record.get("converged")]
        counts[method] = {"converged": len(converged), "best_patience_before_end": sum(
            record.get("evaluations_after_best", 0) >= (record.get("patience") or math.inf) for record in converged),
            "cells": len(records)}
    return counts


def _rerun_shifts(corpora: dict[str, Any], methods: list[str]) -> dict[str, dict[str, Any]]:
    """Per method whose cells were rerun with a larger budget: how many were, and the smallest and largest change of
    test F1 x 100 from each cell's first budget round to its recorded one."""
    shifts = {}
    for method in methods:
        changes = [f1 - 100 * rounds[0]["test_f1"] for entry in corpora.values()
                   for f1, rounds in zip(entry["methods"].get(method, []), entry["previous_rounds"].get(method, []))
                   if rounds]
        if changes:
            shifts[method] = {"cells": len(changes), "min": min(changes), "max": max(changes)}
    return shifts


def _stage1_reruns(corpora: dict[str, Any]) -> dict[str, Any]:
    """Per HSTL cell of a later budget round (its rerun retrained the seed's stage 1): test F1 x 100 on the target of
    the seed's recorded multi_task cell (its first stage 1), of the retrained stage 1 and of the HSTL cell, and their
    difference retrained - recorded (None where either is missing); and the smallest and largest difference."""
    rows = []
    for name, entry in corpora.items():
        recorded = dict(zip(entry["seeds"].get("multi_task", []), entry["methods"].get("multi_task", [])))
        hstl = zip(entry["seeds"].get("hstl", []), entry["methods"].get("hstl", []),
                   entry["budget_rounds"].get("hstl", []), entry.get("hstl_stage1_test_f1", []))
        rows += [{"corpus": name, "seed": seed, "multi_task": recorded.get(seed), "stage1": stage1, "hstl": f1,
                  "difference": None if None in (stage1, recorded.get(seed)) else stage1 - recorded[seed]}
                 for seed, f1, budget_round, stage1 in hstl if budget_round]
    differences = [row["difference"] for row in rows if row["difference"] is not None]
    return {"cells": rows, "min": min(differences, default=None), "max": max(differences, default=None)}


def _table_rows(entry: dict[str, Any]) -> dict[str, Any]:
    """Mean and standard deviation over seeds (F1 in [0, 1]) per method, with the gain over single-task: the mean
    difference over the seeds both have (while a comparison runs, a method can have fewer)."""
    rows = {}
    for method, scores in entry["methods"].items():
        f1 = [score / 100 for score in scores]
        rows[method] = {"mean": statistics.fmean(f1), "std": statistics.stdev(f1) if len(f1) > 1 else 0.0,
                        "n": len(f1), "f1": f1}
    if "single_task" not in rows:
        return rows
    for method, row in rows.items():
        scores, baseline = _on_common_seeds(entry, method, "single_task")
        if method != "single_task" and scores:
            row["gain_over_single_task"] = statistics.fmean(a / 100 - b / 100 for a, b in zip(scores, baseline))
    return rows


def _on_common_seeds(entry: dict[str, Any], method: str, other: str) -> tuple[list[float], list[float]]:
    """Test F1 x 100 of two methods on the seeds both have, in seed order: the gains and the seed-level tests compare
    these (while a comparison runs, one method can have fewer seeds)."""
    scores = {m: dict(zip(entry["seeds"][m], entry["methods"][m])) for m in (method, other)}
    common = sorted(scores[method].keys() & scores[other].keys())
    return [scores[method][seed] for seed in common], [scores[other][seed] for seed in common]
