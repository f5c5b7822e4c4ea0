"""Every error caused by the user's input: a bad argument, config value, corpus file, checkpoint or model folder.

The command-line scripts report these as one line (`hstl.cli.run_cli`). They live here, apart from the heavy modules
that raise them, so that reporting a user error never imports torch. Standard library only.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, Union


PathLike = Union[str, "os.PathLike[str]"]


class RunConfigError(ValueError):
    """A run configuration value or a command-line argument is missing or wrong; the message names the file and the
    key, or the argument."""


class CorpusFormatError(ValueError):
    """A corpus file is malformed; the message reads `"{path}:{line}: {expected}, got {got}"`.

    Attributes:
        path: the file, as a string.
        line: 1-based line number of the problem, or None when it concerns no single line.
        expected: what a well-formed file has there.
        got: what the file has instead.
    """

    def __init__(self, path: PathLike, line: int | None, expected: str, got: str) -> None:
        self.path = str(path)
        self.line = line
        self.expected = expected
        self.got = got
        location = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{location}: {expected}, got {got}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle as `cls(*self.args)` by default, which does not match this signature; worker processes
        # (datasets.map(num_proc=...), DataLoader workers) need to send the error back intact.
        return type(self), (self.path, self.line, self.expected, self.got)


class DatasetInputError(ValueError):
    """A Hugging Face `datasets` source cannot be read as token classification data; the message names the dataset
    and the column, split or row."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, damaged or from another run; the message names its path."""


class NonFiniteError(RuntimeError):
    """Training met a NaN or infinite loss or gradient and `nonfinite_policy` is "stop"."""


class PublishError(ValueError):
    """A model folder cannot be published as it is; the message names the folder or file and what is wrong."""


class PredictionInputError(ValueError):
    """An argument or an input of prediction or evaluation cannot be used; the message names it, what was expected
    and what came."""


class OutputInUseError(RuntimeError):
    """Another run holds the lock of the output (`hstl.locking`); the message names the output and the holder."""


class DiskFullError(RuntimeError):
    """The disk filled up while a run wrote its output; the message names the file or folder and how much the run
    had written there."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message (libraries' messages run over several lines), or its type's name."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def is_disk_full(error: BaseException, written: PathLike | None = None) -> bool:
    """Whether `error`, or an error it was raised from, comes from a full device: an `OSError` with errno ENOSPC or
    EDQUOT; a library error that only carries the text (safetensors: "StorageFull"); or, given the folder or file
    being `written`, any `OSError` or `RuntimeError` (torch.save: "unexpected pos", "iostream error") while its
    device has less than 1 MiB left."""
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        chain.append(error)
        error = error.__cause__ or error.__context__
    for item in chain:
        if isinstance(item, OSError) and item.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(item) or "StorageFull" in str(item):
            return True
    if written is None or not isinstance(chain[0], (OSError, RuntimeError)):
        return False
    folder = Path(written)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    device = os.statvfs(folder)
    return device.f_bavail * device.f_frsize < 1 << 20


def bytes_under(path: PathLike) -> int:
    """Bytes of a file, or of every file below a folder (0 when it does not exist)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file()) if path.is_dir() else 0


def disk_full_error(error: BaseException, written: PathLike, then: str) -> DiskFullError:
    """The one-line error for a full disk: the file being written (when the error names one, else `written`), how
    many bytes the run holds in `written` (its output file or folder), and what to do `then`."""
    target = getattr(error, "filename", None) or written
    held = bytes_under(written)
    return DiskFullError(f"{target}: no space left on device; the run had written {held / 2**20:.1f} MiB ({held} "
                         f"bytes) to {written} so far; free at least that much, then {then}")


USER_ERRORS: tuple[type[BaseException], ...] = (
    RunConfigError, CorpusFormatError, DatasetInputError, CheckpointError, NonFiniteError, PublishError,
    PredictionInputError, OutputInUseError, DiskFullError, FileNotFoundError,
)
"""What `hstl.cli.run_cli` reports as `error: <message>` (exit status 2) instead of a traceback."""
