"""What a resumed run compares with the run it resumes: checksums of files, and flat settings with their changes.

A training checkpoint records the run's settings (`hstl.training.run_fingerprint`) and the sha256 of each file it
holds (`hstl.checkpointing`); `predict.py --resume` records its input, model and settings in its progress file
(`hstl.inference.streaming`). Both refuse to resume when anything differs, naming each change as
`key: <recorded> in the <record>, <current> now`. Standard library only.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


def file_sha256(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """The sha256 of a file's bytes, read in chunks (memory stays at `chunk_bytes` whatever the size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings and lists as one mapping of dotted keys (`training.seed`, `tasks[0].data_dir`) to scalars, so
    that a change is named by its key alone."""
    if isinstance(values, dict):
        items = [(f"{prefix}.{key}" if prefix else str(key), value) for key, value in values.items()]
    elif isinstance(values, (list, tuple)):
        items = [(f"{prefix}[{index}]", value) for index, value in enumerate(values)]
    else:
        return {prefix: values}
    flat: dict[str, Any] = {}
    for key, value in items:
        flat.update(flatten(value, key) if isinstance(value, (dict, list, tuple)) and value else {key: value})
    return flat


def changes(recorded: dict[str, Any], current: dict[str, Any], record: str) -> list[str]:
    """`key: <recorded value> in the <record>, <current value> now` for each key whose value differs (a key missing
    on one side counts as `None` there), in key order."""
    keys = sorted(key for key in {**recorded, **current} if recorded.get(key) != current.get(key))
    return [f"{key}: {recorded.get(key)!r} in the {record}, {current.get(key)!r} now" for key in keys]
