"""Every error caused by the user's input: a bad argument, config value, corpus file, checkpoint or model folder.

The command-line scripts report these as one line (`hstl.cli.run_cli`). They live here, apart from the heavy modules
that raise them, so that reporting a user error never imports torch. Standard library only.
"""

from __future__ import annotations

import os
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


USER_ERRORS: tuple[type[BaseException], ...] = (
    RunConfigError, CorpusFormatError, DatasetInputError, CheckpointError, NonFiniteError, PublishError,
    PredictionInputError, FileNotFoundError,
)
"""What `hstl.cli.run_cli` reports as `error: <message>` (exit status 2) instead of a traceback."""
