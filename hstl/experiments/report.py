"""A comparison's summary (`hstl.experiments.statistics.summarize`) as a report: NAME.md (its tables), NAME.json (the
summary itself) and NAME.png (test F1 per corpus and method)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from .statistics import ALPHA, BASELINES, format_p_value


def mean_over_seeds_text(mean: float, std: float, n: int, most_seeds: int) -> str:
    """`mean ± std` over n seeds; one seed has no spread to show, and a count short of the table's most seeds (a
    comparison still running) or a single seed is marked: `55.00 [1 seed]`, `60.00 ± 1.20 [2 seeds]`."""
    text = f"{mean:.2f}" + (f" ± {std:.2f}" if n > 1 else "")
    if n < most_seeds or n == 1:
        text += f" [{n} seed{'s' if n > 1 else ''}]"
    return text


def format_markdown(summary: dict[str, Any]) -> str:
    """Test F1 x 100, mean ± std over seeds, gain over single-task in brackets; how many cells are converged and
    each cell's convergence; the tests of HSTL against each baseline (per seed: the sentence and the block or
    document bootstrap, raw and Holm p; per corpus: the seed-level tests); the steps and hours of each method."""
    methods = summary["methods"]
    most_seeds = max((cell["n"] for rows in summary["table"].values() for cell in rows.values()), default=0)
    lines = ["| corpus | family | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for corpus, entry in summary["corpora"].items():
        row = []
        for method in methods:
            cell = summary["table"][corpus].get(method)
            if cell is None:
                row.append("-")
                continue
            text = mean_over_seeds_text(100 * cell["mean"], 100 * cell["std"], cell["n"], most_seeds)
            if "gain_over_single_task" in cell:
                text += f" ({100 * cell['gain_over_single_task']:+.2f})"
            row.append(text)
        lines.append(f"| {corpus} | {entry['family']} | " + " | ".join(row) + " |")
    for baseline, overview in summary.get("overview", {}).items():
        lines += _overview_lines(summary, baseline, overview)
    lines += _convergence_lines(summary) + _rerun_lines(summary) + _stage1_rerun_lines(summary)
    for baseline in BASELINES:
        lines += _bootstrap_lines(summary, baseline) + _seed_level_lines(summary, baseline)
    lines += ["", "Steps and wall-clock hours per cell (mean over seeds; stage 1 counted in every cell that uses it):",
              "", "| corpus | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for corpus, entry in summary["corpora"].items():
        lines.append(f"| {corpus} | " + " | ".join(_steps_and_hours(entry, method) for method in methods) + " |")
    return "\n".join(lines) + "\n"


_NO_SEED_TEST = "none (fewer than 2 seeds a side)"


def _overview_lines(summary: dict[str, Any], baseline: str, overview: dict[str, Any]) -> list[str]:
    """What the tests below add up to for one baseline: the range of the mean gains, how many corpora and seeds HSTL
    is above, how many tests of each family are below alpha raw and after Holm."""
    families = summary["tests"]["families"]
    key = f"hstl_vs_{baseline}"
    ranked = sorted(overview["mean_gain"].items(), key=lambda item: item[1])
    gains = " to ".join(dict.fromkeys(f"{gain:+.2f} ({corpus})" for corpus, gain in (ranked[0], ranked[-1])))

    def counts(family: str) -> str:
        record = families.get(family, {})
        if not record.get("size"):
            return _NO_SEED_TEST
        return f"{record['significant_raw']} / {record['significant_holm']} of {record['size']}"

    p_range = overview["variance_p_range"]
    variance = (_NO_SEED_TEST if not overview["variance_tests"] else
                f"{overview['variance_rejected']} of {overview['variance_tests']} (p {format_p_value(p_range[0])} to "
                f"{format_p_value(p_range[1])})")
    return ["", f"HSTL against {baseline} over the seeds both have, what the tests below add up to (significant: p "
                f"below {ALPHA}):", "",
            f"| HSTL against {baseline} | figure |", "|---|---|",
            f"| mean difference of test F1 x 100, lowest to highest corpus | {gains} |",
            f"| corpora where HSTL's mean is above | {overview['corpora_above']} of {len(ranked)} |",
            f"| paired seeds where HSTL is above / below | {overview['seeds_above']} / {overview['seeds_below']} of "
            f"{overview['seeds']} |",
            f"| seeds significant over test sentences, raw / Holm | {counts(f'bootstrap_{key}')} |",
            f"| seeds significant over blocks or documents, raw / Holm | {counts(f'unit_bootstrap_{key}')} |",
            f"| seeds where HSTL is below, significant after Holm | {overview['seeds_below_holm']} of "
            f"{overview['seeds_below']} |",
            f"| corpora significant with seeds as the sample, permutation test, raw / Holm | "
            f"{counts(f'seed_level_{key}')} |",
            f"| the same, Welch's t-test, raw / Holm | {counts(f'seed_level_{key}_welch')} |",
            f"| F-tests rejecting equal seed variances | {variance} |"]


def _convergence_lines(summary: dict[str, Any]) -> list[str]:
    """How many cells per method early stopping ended, then every cell: its best and last evaluated step, why it
    stopped, and the validation F1 x 100 it gained in the last third of its own run (stage 2, or the single-task or
    stage-1 run)."""
    counts = summary.get("convergence_counts", {})
    lines = ["", "Converged cells (early stopping ended the cell's own run, not its budget): " + "; ".join(
        f"{method} {count['converged']} of {count['cells']}" for method, count in counts.items()) + ". Of these, "
        "with the best validation F1 at least `patience` evaluations before the end: " + "; ".join(
        f"{method} {count.get('best_patience_before_end', '?')}" for method, count in counts.items()) + ".", "",
        "| corpus | method | seed | test F1 | best step | last step | stop reason | converged | budget round | "
        "late gain |", "|---|---|---|---|---|---|---|---|---|---|"]
    for corpus, entry in summary["corpora"].items():
        for method, records in entry["convergence"].items():
            rounds = entry.get("budget_rounds", {}).get(method, [0] * len(records))
            for seed, f1, record, budget_round in zip(entry["seeds"][method], entry["methods"][method], records,
                                                      rounds):
                record = record or {}
                gain = record.get("late_gain")
                lines.append(f"| {corpus} | {method} | {seed} | {f1:.2f} | {record.get('best_step', '?')} | "
                             f"{record.get('last_step', '?')} | {record.get('stop_reason', '?')} | "
                             f"{'yes' if record.get('converged') else 'no'} | {budget_round} | "
                             f"{'?' if gain is None else f'{100 * gain:+.2f}'} |")
    return lines


def _rerun_lines(summary: dict[str, Any]) -> list[str]:
    """The cells trained again with a larger budget: one row per budget round (test F1, best and last step, stop
    reason), the recorded round last; and per method how far test F1 moved from the first round to the recorded one."""
    shifts = summary.get("rerun_shifts", {})
    if not shifts:
        return []
    lines = ["", "Cells trained again with a larger budget, one row per budget round, the round the tables use last. "
                 "Test F1 x 100 from the first round to the recorded one: " + "; ".join(
                     f"{method} {shift['cells']} cell{'s' if shift['cells'] > 1 else ''}, {shift['min']:+.2f} to "
                     f"{shift['max']:+.2f}" for method, shift in shifts.items()) + ".", "",
             "| corpus | method | seed | budget round | test F1 | best step | last step | stop reason |",
             "|---|---|---|---|---|---|---|---|"]
    for corpus, entry in summary["corpora"].items():
        for method, cells_rounds in entry["previous_rounds"].items():
            cells = zip(entry["seeds"][method], cells_rounds, entry["methods"][method], entry["convergence"][method],
                        entry["budget_rounds"][method])
            for seed, rounds, f1, record, budget_round in cells:
                if not rounds:
                    continue
                rows = [(r["budget_round"], 100 * r["test_f1"], r.get("convergence") or {}) for r in rounds]
                for round_number, round_f1, convergence in rows + [(budget_round, f1, record or {})]:
                    lines.append(f"| {corpus} | {method} | {seed} | {round_number} | {round_f1:.2f} | "
                                 f"{convergence.get('best_step', '?')} | {convergence.get('last_step', '?')} | "
                                 f"{convergence.get('stop_reason', '?')} |")
    return lines


def _stage1_rerun_lines(summary: dict[str, Any]) -> list[str]:
    """The stage 1 behind each rerun HSTL cell against the seed's recorded multi_task cell, on the target."""
    reruns = summary.get("stage1_reruns") or {}
    if not reruns.get("cells"):
        return []

    def cell(value: float | None, signed: bool = False) -> str:
        return "?" if value is None else f"{value:+.2f}" if signed else f"{value:.2f}"

    spread = ("" if reruns["min"] is None else
              f" Retrained - recorded: {reruns['min']:+.2f} to {reruns['max']:+.2f}.")
    lines = ["", "A rerun HSTL cell retrains its seed's stage 1. Test F1 x 100 on the target of the seed's recorded "
                 "multi_task cell (its first stage 1), of the retrained stage 1 and of the HSTL cell fine-tuned from "
                 "it." + spread, "",
             "| corpus | seed | multi_task (recorded) | stage 1 (retrained) | retrained - recorded | hstl |",
             "|---|---|---|---|---|---|"]
    for row in reruns["cells"]:
        lines.append(f"| {row['corpus']} | {row['seed']} | {cell(row['multi_task'])} | {cell(row['stage1'])} | "
                     f"{cell(row['difference'], signed=True)} | {cell(row['hstl'])} |")
    return lines


def _bootstrap_lines(summary: dict[str, Any], baseline: str) -> list[str]:
    tests = [(corpus, seed, result, entry[f"unit_bootstrap_hstl_vs_{baseline}"].get(seed))
             for corpus, entry in summary["corpora"].items()
             for seed, result in entry.get(f"bootstrap_hstl_vs_{baseline}", {}).items()]
    if not tests:
        return []
    samples = summary["tests"]["bootstrap_samples"]
    family = summary["tests"]["families"][f"bootstrap_hstl_vs_{baseline}"]
    units = summary["tests"]["families"].get(f"unit_bootstrap_hstl_vs_{baseline}", {})
    lines = ["", f"Paired bootstrap of HSTL - {baseline} (F1 x 100), {samples:,} samples, two-sided p: over test "
                 f"sentences, and drawing whole documents, or blocks of {summary['tests']['block_size']} consecutive "
                 f"sentences where the corpus marks no documents. Holm corrects over the {family['size']} tests of "
                 f"each column's family (every corpus and seed against {baseline}). "
                 f"\"{format_p_value(0, samples)}\": no sample of the {samples:,} fell on the other side of 0. Below "
                 f"{ALPHA}: {family['significant_raw']} of {family['size']} raw, {family['significant_holm']} "
                 f"after Holm (sentences); {units.get('significant_raw', '-')} raw, "
                 f"{units.get('significant_holm', '-')} after Holm (blocks or documents).", "",
             f"| corpus | seed | HSTL | {baseline} | difference | p sentences | Holm | p blocks | Holm (blocks) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for corpus, seed, r, unit in tests:
        unit_text = (f"{format_p_value(unit['p_two_sided'], samples)} | "
                     f"{format_p_value(unit['p_holm'], samples, unit['p_holm_is_bound'])}" if unit else "- | -")
        lines.append(f"| {corpus} | {seed} | {100 * r['f1_a']:.2f} | {100 * r['f1_b']:.2f} | "
                     f"{100 * r['delta']:+.2f} | {format_p_value(r['p_two_sided'], samples)} | "
                     f"{format_p_value(r['p_holm'], samples, r['p_holm_is_bound'])} | {unit_text} |")
    return lines


def _seed_level_lines(summary: dict[str, Any], baseline: str) -> list[str]:
    key = f"seed_level_hstl_vs_{baseline}"
    rows = [(corpus, entry[key]) for corpus, entry in summary["corpora"].items() if key in entry]
    if not rows:
        return []
    family, welch_family = summary["tests"]["families"][key], summary["tests"]["families"].get(f"{key}_welch", {})
    smallest = min(test["permutation"]["smallest_p"] for _, test in rows)
    lines = ["", f"Seeds as the sample, HSTL against {baseline} over the seeds both have: the exact permutation test "
                 f"of the difference of mean test F1 over every split of the runs (its smallest possible two-sided p "
                 f"at these seed counts is {smallest:.2g}), Holm over the {family['size']} corpora "
                 f"({family['significant_holm']} below {ALPHA}); Welch's t-test beside it, Holm over the same corpora "
                 f"({welch_family.get('significant_raw', '-')} below {ALPHA} raw, "
                 f"{welch_family.get('significant_holm', '-')} after Holm); and the two-sided F-test of equal variance "
                 f"over seeds (variance ratio HSTL / {baseline}, rejected at 5 % outside the critical ratios):", "",
             f"| corpus | HSTL - {baseline} (means) | permutation p | Holm | Welch t (df) | Welch p | Holm | "
             "variance ratio | F p | 5 % critical ratios |", "|---|---|---|---|---|---|---|---|---|---|"]
    for corpus, test in rows:
        permutation, welch, variance = test["permutation"], test["welch"], test["variance_ratio"]
        welch_text = (f"{welch['t']:.2f} ({welch['df']:.1f}) | {format_p_value(welch['p_two_sided'])} | "
                      f"{format_p_value(welch['p_holm'])}" if welch else "- | - | -")
        variance_text = (f"{variance['ratio']:.2f} | {format_p_value(variance['p_two_sided'])} | "
                         f"{variance['critical_low']:.3g}, {variance['critical_high']:.3g}"
                         if variance else "- | - | -")
        lines.append(f"| {corpus} | {permutation['difference']:+.2f} | {format_p_value(permutation['p_two_sided'])} | "
                     f"{format_p_value(permutation['p_holm'])} | {welch_text} | {variance_text} |")
    return lines


def _steps_and_hours(entry: dict[str, Any], method: str) -> str:
    steps = [step for step in entry["steps"].get(method, []) if step is not None]
    seconds = [sum(run or 0.0 for run in runs) for runs in entry["wall_seconds"].get(method, []) if runs]
    if not steps and not seconds:
        return "-"
    step_text = f"{statistics.fmean(steps):.0f} steps" if steps else "? steps"
    return step_text + (f", {statistics.fmean(seconds) / 3600:.2f} h" if seconds else "")


def write_reports(summary: dict[str, Any], output_dir: Path, name: str = "results") -> None:
    """OUTPUT_DIR/NAME.json (the summary), NAME.md (its tables) and NAME.png (test F1 per corpus and method)."""
    from ..plotting import write_summary_files

    write_summary_files(summary, output_dir, name, format_markdown(summary), plot_summary)


def plot_summary(summary: dict[str, Any], path: Path) -> None:
    """Test F1 per corpus, one bar per method, with the standard deviation over seeds (the package's bar chart)."""
    from ..plotting import grouped_bar_chart

    corpora, methods = list(summary["corpora"]), summary["methods"]
    cells = {method: [summary["table"][corpus].get(method, {}) for corpus in corpora] for method in methods}
    labels = legend_labels(summary)
    grouped_bar_chart(path, corpora, {labels[method]: [100 * cell.get("mean", math.nan) for cell in row]
                                      for method, row in cells.items()},
                      errors={labels[method]: [100 * cell.get("std", 0.0) for cell in row]
                              for method, row in cells.items()},
                      ylabel="test F1 (mean ± std over seeds)")


def legend_labels(summary: dict[str, Any]) -> dict[str, str]:
    """Each method's name in the chart, with its seed count (`seed_count_label`), so that a bar from fewer seeds says
    so as its table cell does."""
    return {method: seed_count_label(method, [rows[method]["n"] for rows in summary["table"].values()
                                              if method in rows]) for method in summary["methods"]}


def seed_count_label(name: str, counts: list[int]) -> str:
    """`hstl (3 seeds)`, or `hstl (1-2 seeds)` when its points (corpora, fractions) have different seed counts; the
    bare name without points."""
    counts = sorted(set(counts))
    if not counts:
        return name
    span = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"{name} ({span} seed{'' if counts == [1] else 's'})"
