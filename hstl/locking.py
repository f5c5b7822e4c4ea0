"""One writer per output: an exclusive `fcntl.flock` on a lock file beside the output, held for the whole run.

`predict.py` locks `OUT.lock` (beside `OUT`, `OUT.partial` and `OUT.progress.json`), `train.py` and `finetune.py`
lock `OUTPUT_DIR/.hstl.lock`. A second run that asks for the same lock stops at once with one line naming the
holder (its pid and host, which the holder writes into the lock file); it never waits. The kernel drops the lock when
the holder exits, however it exits (SIGKILL included), so a lock file left behind by a killed run locks nothing: it is
taken over by the next run. Under `accelerate launch` the main process takes the lock for all of its processes.

Standard library only.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from .errors import OutputInUseError


class OutputLock:
    """An exclusive lock on `path` (created when missing), taken by `acquire` and dropped by `release`.

    Raises (from `acquire`):
        OutputInUseError: another process holds the lock; the message names `what`, the lock file and the holder.
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path = Path(path)
        self.what = what
        self._handle = None

    def acquire(self) -> "OutputLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            handle = open(self.path, "a+", encoding="utf-8")
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise OutputInUseError(f"{self.what}: expected no other run writing it, got {holder} holding "
                                       f"{self.path}; wait for it to end, or write elsewhere") from None
            # The previous holder may have removed the file between our open and our lock: then we hold a lock on a
            # file nobody else will open; start again on the file now at the path.
            try:
                same = os.path.samestat(os.fstat(handle.fileno()), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            handle.close()
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on host {socket.gethostname()}\n")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        """Removes the lock file, then drops the lock (removing first: no one can lock the old file after us)."""
        if self._handle is None:
            return
        self.path.unlink(missing_ok=True)
        self._handle.close()
        self._handle = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()


def lock_for_all_processes(accelerator, lock: OutputLock) -> OutputLock | None:
    """The main process of a launch takes `lock` for all of its processes; when another run holds it, every process
    stops with the same `OutputInUseError`. Returns the lock taken in the main process, None in the others."""
    from accelerate.utils import gather_object

    taken, error = None, None
    if accelerator.is_main_process:
        try:
            taken = lock.acquire()
        except OutputInUseError as caught:
            error = str(caught)
    errors = [message for message in gather_object([error]) if message] if accelerator.num_processes > 1 else \
        [error] if error else []
    if errors:
        raise OutputInUseError(errors[0])
    return taken
