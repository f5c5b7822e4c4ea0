"""Where prediction reads and writes besides files: streams, standard input and output, and which paths are refused.

A regular output file is written as `OUT.partial` and moved into place when complete (`ResumableOutput` in
`hstl.inference.streaming`). A stream cannot be replaced by a rename, so it is written to directly, chunk by chunk,
and cannot be resumed: `-` (standard output), an existing FIFO, character device or socket, and any path under `/dev`
or `/proc` (`/dev/stdout` is a link that a rename would replace, even when it points at a regular file). `--input -`
reads standard input, which is kept in a temporary file first: the input is read twice (checked, then tagged).

Checked before the model loads (`check_output_path`): a folder or another kind of file (a block device) named as the
output of one input file is refused in one line, as is a stream with `--resume` or with a folder input.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import PredictionInputError

STDIO = "-"
"""`--input -` reads standard input, `--output -` writes standard output."""

_DEVICE_ROOTS = ("/dev/", "/proc/")


def is_stream(path: Path | str) -> bool:
    """Whether `path` is written in place, never through a partial file and a rename (see the module docstring)."""
    text = os.fspath(path)
    if text == STDIO or os.path.abspath(text).startswith(_DEVICE_ROOTS):
        return True
    try:
        mode = os.stat(text).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def check_output_path(output_path: Path, input_is_folder: bool, resume: bool) -> None:
    """Refuses, in one line naming `--output`, an output that cannot receive what is asked (before any tagging)."""
    if is_stream(output_path):
        if input_is_folder:
            raise PredictionInputError(f"--output: expected a folder for the outputs of a folder --input, got the "
                                       f"stream {output_path}")
        if resume:
            raise PredictionInputError(f"--resume: expected an output file to resume, got the stream {output_path}, "
                                       f"which is written as it goes; run without --resume")
        return
    if not output_path.exists() or input_is_folder:  # a folder output is checked by `folder_jobs`
        return
    if output_path.is_dir():
        raise PredictionInputError(f"--output: expected a file (the input is a file), got the folder {output_path}")
    if not output_path.is_file():
        raise PredictionInputError(f"--output: expected a regular file or a stream (a FIFO, a character device, "
                                   f"-), got {output_path}, which is neither")


class StreamOutput:
    """The output of a stream: each chunk written and flushed as it comes; nothing to resume, nothing to rename."""

    units_done = 0

    def __init__(self, output_path: Path) -> None:
        self.output_path = output_path
        self.bytes_written = 0
        self._handle = None

    def _open(self):
        if self._handle is None:  # opened at the first write: a FIFO blocks until its reader comes
            self._handle = sys.stdout.buffer if os.fspath(self.output_path) == STDIO else open(self.output_path, "ab")
        return self._handle

    def append(self, text: str, units: int) -> None:
        handle = self._open()
        handle.write(text.encode("utf-8"))
        handle.flush()
        self.units_done += units
        self.bytes_written += len(text.encode("utf-8"))

    def close(self) -> None:
        if self._handle is not None and self._handle is not sys.stdout.buffer:
            self._handle.close()
        self._handle = None

    def finish(self, footer: str = "") -> None:
        if footer:
            self.append(footer, 0)
        if self._handle is not None:
            self._handle.flush()
        self.close()


@contextmanager
def readable_input(input_path: Path, resume: bool) -> Iterator[Path]:
    """`input_path` itself, or for `-` a temporary file holding standard input (removed afterwards), named `stdin`
    (text documents are then `stdin:1`, `stdin:2`, ...)."""
    if os.fspath(input_path) != STDIO:
        yield input_path
        return
    if resume:
        raise PredictionInputError("--resume: expected an input file to resume, got - (standard input), which is "
                                   "read once")
    with tempfile.TemporaryDirectory(prefix="hstl-stdin-") as folder:
        spooled = Path(folder) / "stdin"
        with open(spooled, "wb") as handle:
            shutil.copyfileobj(sys.stdin.buffer, handle)
        yield spooled


def check_same_run(recorded: dict, current: dict, record_path: Path) -> None:
    """Refuses `--resume` when the progress record of the interrupted run (`record_path`) differs from this run's
    signature, naming each change (`hstl.fingerprint.changes`)."""
    from ..fingerprint import changes, flatten

    found = changes(flatten(recorded), flatten(current), "interrupted run")
    if found:
        raise PredictionInputError(f"--resume: expected the input, model and settings of the interrupted run "
                                   f"recorded in {record_path}, got {'; '.join(found)}; run without --resume to start "
                                   f"over")
