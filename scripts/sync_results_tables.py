#!/usr/bin/env python
"""Copies the tables of the rebuilt reports into `docs/results.md`, or checks that they are there.

`docs/results.md` quotes the reports that `--report_only` rebuilds from the committed cells: in its section "The full
comparison", the tables of `docs/results-full.md`; in "Data efficiency on BioNLP13CG", those of
`docs/data-efficiency.md`. Each quoted table is replaced by the report's table with the same header row, so that no
figure of those tables is typed by hand. A table of the section whose header is not in the report is left alone.

    python scripts/sync_results_tables.py            # after rebuilding the reports: rewrite the quoted tables
    python scripts/sync_results_tables.py --check    # exit 1, naming the stale tables, when a quote differs

The prose around the tables is not touched: its counts and verdicts are read off the same reports by the writer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"
QUOTED_REPORTS = {"## The full comparison": "results-full.md", "## Data efficiency on BioNLP13CG": "data-efficiency.md"}
"""Section heading of `docs/results.md` -> the report whose tables it quotes."""


def tables(lines: list[str]) -> list[tuple[int, int]]:
    """`(first, end)` line ranges of the Markdown tables (runs of lines starting with "|")."""
    ranges, start = [], None
    for index, line in enumerate([*lines, ""]):
        if line.startswith("|") and start is None:
            start = index
        elif not line.startswith("|") and start is not None:
            ranges.append((start, index))
            start = None
    return ranges


def section_range(lines: list[str], heading: str) -> tuple[int, int]:
    """Lines of the section under `heading` (to the next heading of the same level or the end)."""
    level = heading.split(" ", 1)[0] + " "
    if heading not in lines:
        raise ValueError(f"docs/results.md: expected a section {heading!r}, found none")
    start = lines.index(heading) + 1
    end = next((index for index in range(start, len(lines)) if lines[index].startswith(level)), len(lines))
    return start, end


def synced(document: str, reports: dict[str, str]) -> tuple[str, list[str]]:
    """`document` with each quoted table replaced by its report's table of the same header, and the headers of the
    tables that changed (as `section: header`)."""
    lines = document.split("\n")
    changed = []
    for heading, report in reports.items():
        report_lines = report.split("\n")
        by_header: dict[str, list[str]] = {}
        for first, end in tables(report_lines):
            if report_lines[first] in by_header:
                raise ValueError(f"the report quoted in {heading!r}: expected one table per header row, got two "
                                 f"headed {report_lines[first]!r}")
            by_header[report_lines[first]] = report_lines[first:end]
        start, end = section_range(lines, heading)
        section_changes = []
        # from the last table back, so that earlier line numbers stay valid as tables change length
        for first, last in reversed([(first + start, last + start) for first, last in tables(lines[start:end])]):
            fresh = by_header.get(lines[first])
            if fresh is not None and fresh != lines[first:last]:
                lines[first:last] = fresh
                section_changes.append(f"{heading.lstrip('# ')}: {lines[first]}")
        changed.extend(reversed(section_changes))
    return "\n".join(lines), changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="Change nothing; exit 1 when a quoted table is stale.")
    parser.add_argument("--docs", type=Path, default=DOCS, help="The docs folder (default: the repository's).")
    args = parser.parse_args(argv)
    path = args.docs / "results.md"
    reports = {heading: (args.docs / name).read_text(encoding="utf-8") for heading, name in QUOTED_REPORTS.items()}
    try:
        text, changed = synced(path.read_text(encoding="utf-8"), reports)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    for header in changed:
        print(f"{path}: {'stale' if args.check else 'updated'} table in {header}")
    if not args.check and changed:
        path.write_text(text, encoding="utf-8")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
