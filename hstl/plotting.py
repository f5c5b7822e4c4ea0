"""The bar chart of the package's reports: grouped bars, one group per corpus and one bar per series (a split, a
method), drawn with matplotlib on the file-only Agg backend. matplotlib is optional: `pip install 'hstl[plot]'`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence


def import_pyplot():
    """matplotlib's pyplot on the Agg backend; an ImportError saying how to install it when it is missing."""
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError("charts need matplotlib, an optional dependency: run `pip install 'hstl[plot]'` "
                          "(or `pip install matplotlib`)") from error
    matplotlib.use("Agg")  # no display needed, and no window pops up
    import matplotlib.pyplot as pyplot

    return pyplot


def write_summary_files(summary: dict[str, Any], output_dir: Path, name: str, markdown: str,
                        plot: Callable[[dict[str, Any], Path], None]) -> None:
    """OUTPUT_DIR/NAME.json (the summary), NAME.md (`markdown`) and NAME.png (`plot(summary, path)`; skipped, with a
    line saying so, when matplotlib is missing): the files of every report of the package."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / f"{name}.json").write_text(json.dumps(summary, indent=2))
    (output_dir / f"{name}.md").write_text(markdown)
    try:
        plot(summary, output_dir / f"{name}.png")
    except ImportError:
        print(f"matplotlib is not installed: {name}.png skipped (pip install 'hstl[plot]')")


def grouped_bar_chart(
    path: Path,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    ylabel: str,
    errors: Mapping[str, Sequence[float]] | None = None,
    legend_title: str | None = None,
    value_format: str | None = None,
    ylim: tuple[float, float] | None = None,
) -> None:
    """Writes a PNG: for each group (x tick) one bar per series, in the mapping's order.

    Args:
        path: the PNG file (overwritten).
        groups: x tick labels.
        series: series name (legend entry) -> one value per group.
        ylabel: the y axis label.
        errors: series name -> one error bar half-height per group (no error bars when None).
        legend_title: the legend's title.
        value_format: e.g. "%.2f" to print each bar's value above it.
        ylim: y axis limits.
    """
    pyplot = import_pyplot()
    bar_width = 0.8 / max(len(series), 1)
    figure, axes = pyplot.subplots(figsize=(max(4.0, 1.2 * len(groups) + 1.5), 3.5), layout="constrained")
    for index, (name, values) in enumerate(series.items()):
        positions = [group + (index - (len(series) - 1) / 2) * bar_width for group in range(len(groups))]
        yerr = None if errors is None else errors[name]
        bars = axes.bar(positions, values, bar_width, yerr=yerr, capsize=3 if yerr is not None else 0, label=name)
        if value_format is not None:
            axes.bar_label(bars, fmt=value_format, fontsize=7)
    axes.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
    if ylim is not None:
        axes.set_ylim(*ylim)
    axes.set_ylabel(ylabel)
    axes.legend(title=legend_title, fontsize=8)
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
