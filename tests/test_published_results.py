"""The published results in docs/: the schema issue 10 names, and reports that say what the committed cells say.

The long runs commit one record per finished cell (`docs/results-full-cells/`, `docs/data-efficiency-cells/`); the
reports beside them (`docs/results-full.{json,md}`, `docs/data-efficiency.{json,md}`) are rebuilt from those cells by
`--report_only`. A report that no longer matches its cells (a cell landed, the tables were not rebuilt; a number edited
by hand) fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
CONFIGS = DOCS.parent / "configs"


def test_results_full_json_follows_the_schema_of_issue_10():
    results = json.loads((DOCS / "results-full.json").read_text())
    corpora = results["corpora"]
    assert len(corpora) >= 5
    assert len({entry["family"] for entry in corpora.values()}) >= 3
    for corpus, entry in corpora.items():
        assert isinstance(entry["family"], str) and entry["family"], corpus
        for method, scores in entry["methods"].items():
            assert isinstance(scores, list) and scores, (corpus, method)
            # test F1 x 100, one per seed
            assert all(isinstance(score, float) and 1.0 < score <= 100.0 for score in scores), (corpus, method)


@pytest.mark.parametrize("runner, config, cells, prefix", [
    ("eval.compare", "compare-full.yaml", "results-full-cells", "results-full"),
    ("eval.data_efficiency", "data-efficiency.yaml", "data-efficiency-cells", "data-efficiency"),
])
def test_committed_reports_are_the_ones_their_committed_cells_rebuild(tmp_path, runner, config, cells, prefix):
    pytest.importorskip("matplotlib")
    import importlib

    main = importlib.import_module(runner).main
    assert main(["--config", str(CONFIGS / config), "--output_dir", str(tmp_path / "out"),
                 "--cells_dir", str(DOCS / cells), "--report_only",
                 "--results_prefix", str(tmp_path / prefix)]) == 0
    assert json.loads((tmp_path / f"{prefix}.json").read_text()) == json.loads((DOCS / f"{prefix}.json").read_text()), (
        f"docs/{prefix}.json is not what docs/{cells} rebuilds: run {runner} --report_only (see docs/results.md)")
    assert (tmp_path / f"{prefix}.md").read_text() == (DOCS / f"{prefix}.md").read_text()


def _sync_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("sync_results_tables",
                                                  DOCS.parent / "scripts" / "sync_results_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_md_quotes_the_committed_reports_tables_unchanged():
    """Every table of docs/results.md's full-comparison and data-efficiency sections whose header is a report's table
    is that table, figure for figure (`scripts/sync_results_tables.py --check`)."""
    assert _sync_script().main(["--check"]) == 0


def test_table_sync_replaces_tables_by_header_within_their_section_only():
    script = _sync_script()
    document = "\n".join([
        "# Results", "## The full comparison", "intro", "| a | b |", "|---|---|", "| 1 | 2 |", "text",
        "| other |", "|---|", "| 9 |", "### Sub", "| c |", "|---|", "| 3 |",
        "## Data efficiency on BioNLP13CG", "| a | b |", "|---|---|", "| 1 | 2 |", "## CPU miniature", "| a | b |",
        "|---|---|", "| 1 | 2 |", ""])
    reports = {"## The full comparison": "| a | b |\n|---|---|\n| 5 | 6 |\n| 7 | 8 |\n\n| c |\n|---|\n| 4 |\n",
               "## Data efficiency on BioNLP13CG": "| a | b |\n|---|---|\n| 0 | 0 |\n"}
    text, changed = script.synced(document, reports)
    assert text.split("\n") == [
        "# Results", "## The full comparison", "intro", "| a | b |", "|---|---|", "| 5 | 6 |", "| 7 | 8 |", "text",
        "| other |", "|---|", "| 9 |", "### Sub", "| c |", "|---|", "| 4 |",
        "## Data efficiency on BioNLP13CG", "| a | b |", "|---|---|", "| 0 | 0 |", "## CPU miniature", "| a | b |",
        "|---|---|", "| 1 | 2 |", ""]
    assert changed == ["The full comparison: | a | b |", "The full comparison: | c |",
                       "Data efficiency on BioNLP13CG: | a | b |"]
    assert script.synced(text, reports) == (text, [])


def test_results_md_status_line_counts_the_converged_cells_of_the_report():
    import re

    counts = json.loads((DOCS / "results-full.json").read_text())["convergence_counts"]
    status = re.search(r"\*\*Status: (\d+) of (\d+) single-task cells and (\d+) of (\d+) HSTL cells are converged\*\*",
                       (DOCS / "results.md").read_text())
    assert status is not None
    assert [int(value) for value in status.groups()] == [
        counts["single_task"]["converged"], counts["single_task"]["cells"], counts["hstl"]["converged"],
        counts["hstl"]["cells"]]


def test_results_md_status_line_counts_the_cells_converged_under_the_stricter_reading():
    """"in X and Y of them the best validation F1 also came at least `patience` evaluations before the end": counted
    here from the committed cell records."""
    import re

    strict = []
    for method in ("single_task", "hstl"):
        cells = [json.loads(path.read_text())["convergence"]
                 for path in sorted((DOCS / "results-full-cells" / method).glob("*/seed*.json"))]
        strict.append(sum(cell["converged"] and cell["evaluations_after_best"] >= cell["patience"] for cell in cells))
    stated = re.search(r"budget; in (\d+) and (\d+) of them the best validation F1 also came at least `patience`\s+"
                       r"evaluations before the end", (DOCS / "results.md").read_text())
    assert stated is not None and [int(value) for value in stated.groups()] == strict


def test_table_sync_refuses_a_report_with_two_tables_of_one_header():
    script = _sync_script()
    document = "## The full comparison\n| a |\n|---|\n| 1 |\n"
    with pytest.raises(ValueError, match=r"expected one table per header row, got two headed '\| a \|'"):
        script.synced(document, {"## The full comparison": "| a |\n|---|\n| 2 |\n\n| a |\n|---|\n| 3 |\n"})


def test_readme_short_result_states_the_comparison_of_the_committed_report():
    """The README's short result: the range of HSTL's mean gain over single-task and how many seeds are significant
    after Holm; in how many of its cells the compute-matched control is ahead, their differences and how many are
    significant after Holm. Counted here from the report's per-seed figures."""
    import re

    corpora = json.loads((DOCS / "results-full.json").read_text())["corpora"]
    gains, holm, seeds, matched, matched_holm = [], 0, 0, [], 0
    for entry in corpora.values():
        f1 = {method: dict(zip(entry["seeds"][method], entry["methods"][method])) for method in entry["methods"]}
        common = sorted(f1["hstl"].keys() & f1["single_task"].keys())
        gains.append(sum(f1["hstl"][seed] - f1["single_task"][seed] for seed in common) / len(common))
        tests = entry["bootstrap_hstl_vs_single_task"].values()
        seeds, holm = seeds + len(tests), holm + sum(test["p_holm"] < 0.05 for test in tests)
        for seed, control in f1.get("single_task_matched", {}).items():
            matched.append(control - f1["hstl"][seed])
            matched_holm += entry["bootstrap_hstl_vs_single_task_matched"][str(seed)]["p_holm"] < 0.05
    readme = " ".join((DOCS.parent / "README.md").read_text().split())
    stated = re.search(r"\(([+-]\d+\.\d\d) to ([+-]\d+\.\d\d) F1; (\d+) of (\d+) seeds significant after Holm", readme)
    assert stated is not None
    assert stated.groups() == (f"{min(gains):+.2f}", f"{max(gains):+.2f}", str(holm), str(seeds))
    stated = re.search(r"ahead of HSTL in (\d+) of the (\d+) control cells[^(]*\(([^;]*); (\d+) after Holm\)", readme)
    assert stated is not None
    assert stated.group(3).split(", ") == [f"{difference:+.2f}" for difference in matched]
    assert (int(stated.group(1)), int(stated.group(2))) == (sum(difference > 0 for difference in matched), len(matched))
    assert int(stated.group(4)) == matched_holm
