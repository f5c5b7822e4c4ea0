"""Shared pytest fixtures.

The real corpora live outside the repository, in `../shared/data/bioner` (one folder per corpus holding
`{train,devel,test}.tsv`); the environment variable `HSTL_BIONER_DIR` points elsewhere. Tests that read them take the
`bioner_dir` fixture, carry `@pytest.mark.corpora` and are skipped when the folder is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def find_bioner_dir() -> Path | None:
    """The real-corpora folder, or None when it does not exist here."""
    configured = os.environ.get("HSTL_BIONER_DIR")
    candidate = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data" / "bioner"
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def bioner_dir() -> Path:
    """Folder holding `<corpus>/{train,devel,test}.tsv`; skips the test when it is absent."""
    found = find_bioner_dir()
    if found is None:
        pytest.skip("real corpora not found: set HSTL_BIONER_DIR or provide ../shared/data/bioner")
    return found
