"""Whole-file tagging split among the processes of `accelerate launch`: each process tags and writes its own chunks.

Chunk `g` (units `g*chunk_size` to `(g+1)*chunk_size - 1`) belongs to process `g % num_processes`. Every process reads
the input (to find unit boundaries) but builds the sentences of, tokenizes, tags, stitches and renders only its own
chunks, and appends them to its part `OUT.part{rank}-of{N}`. After each chunk, once the part's bytes are on disk, it
appends the part's new length to `OUT.part{rank}-of{N}.index` (first line: the run signature as JSON), so the index
never claims more than the part holds. When every process is done, the main process writes header, chunks in input
order (`separator` between them) and footer to `OUT.partial`, moves it to `OUT` and removes the parts: the output is
byte-identical to a one-process run's. Memory is bounded by a chunk in every process, the merge included.

`--resume` is per part: each process truncates its part to the length its index last recorded and skips the chunks
already there. A run killed during the merge resumes with nothing to tag and merges again. The signature holds the
number of processes and the chunk size, which decide who tags what; resuming with others is refused.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ..errors import PredictionInputError

logger = logging.getLogger(__name__)


def part_path(output_path: Path, rank: int, num_processes: int) -> Path:
    return output_path.with_name(f"{output_path.name}.part{rank}-of{num_processes}")


def index_path(output_path: Path, rank: int, num_processes: int) -> Path:
    part = part_path(output_path, rank, num_processes)
    return part.with_name(part.name + ".index")


def read_index(output_path: Path, rank: int, num_processes: int, signature: dict[str, Any]) -> list[int]:
    """Lengths of the part after each of its completed chunks, checked against `signature`; [] when there is none."""
    part, index = part_path(output_path, rank, num_processes), index_path(output_path, rank, num_processes)
    if not (part.is_file() and index.is_file()):
        return []
    lines = index.read_text(encoding="utf-8").split("\n")
    complete = lines[:-1]  # the text after the last "\n" is a line cut short by a kill
    try:
        recorded = json.loads(complete[0]) if complete else None
        ends = [int(line) for line in complete[1:]]
    except ValueError as error:
        raise PredictionInputError(f"{index}: expected a part index (signature, then lengths), got {error}; run "
                                   f"without --resume to start over") from None
    if recorded is None:
        return []
    differing = sorted(key for key in {**recorded, **signature} if recorded.get(key) != signature.get(key))
    if differing:
        raise PredictionInputError(
            f"--resume: expected the same input, model and settings as the interrupted run recorded in {index}, "
            f"got different {differing}; run without --resume to start over"
        )
    if ends and part.stat().st_size < ends[-1]:
        raise PredictionInputError(f"--resume: expected {part} to hold the {ends[-1]} bytes its index claims, got "
                                   f"{part.stat().st_size}; run without --resume to start over")
    return ends


def _write_synced(handle, data: bytes) -> None:
    handle.write(data)
    handle.flush()
    os.fsync(handle.fileno())


class ShardOutput:
    """This process's part and its index (see the module docstring)."""

    def __init__(self, output_path: Path, signature: dict[str, Any], resume: bool, rank: int,
                 num_processes: int) -> None:
        self.part_path = part_path(output_path, rank, num_processes)
        self.index_path = index_path(output_path, rank, num_processes)
        self.chunk_ends = read_index(output_path, rank, num_processes, signature) if resume else []
        if resume and not self.chunk_ends:
            logger.info("--resume: nothing of %s to resume; process %d starts from the beginning", output_path, rank)
        output_path.parent.mkdir(parents=True, exist_ok=True)
        kept = self.chunk_ends[-1] if self.chunk_ends else 0
        self._part = open(self.part_path, "r+b" if kept else "wb")
        self._part.truncate(kept)
        self._part.seek(kept)
        self._index = open(self.index_path, "w", encoding="utf-8")
        self._index.write(json.dumps(signature) + "\n" + "".join(f"{end}\n" for end in self.chunk_ends))
        self._index.flush()

    @property
    def chunks_done(self) -> int:
        return len(self.chunk_ends)

    def append(self, text: str) -> None:
        """Writes this process's next chunk, then records it in the index."""
        _write_synced(self._part, text.encode("utf-8"))
        self.chunk_ends.append(self._part.tell())
        self._index.write(f"{self.chunk_ends[-1]}\n")
        self._index.flush()
        os.fsync(self._index.fileno())

    def close(self) -> None:
        self._part.close()
        self._index.close()


def merge_parts(output_path: Path, num_processes: int, num_chunks: int, signature: dict[str, Any], header: str,
                separator: str, footer: str) -> None:
    """Main process, after every part is complete: the output in input order, then the parts are removed."""
    ends = [read_index(output_path, rank, num_processes, signature) for rank in range(num_processes)]
    for rank in range(num_processes):
        expected = len(range(rank, num_chunks, num_processes))
        assert len(ends[rank]) == expected, f"part {rank} holds {len(ends[rank])} of its {expected} chunks"
    partial = output_path.with_name(output_path.name + ".partial")
    parts = [open(part_path(output_path, rank, num_processes), "rb") for rank in range(num_processes)]
    try:
        with open(partial, "wb") as merged:
            merged.write(header.encode("utf-8"))
            for chunk in range(num_chunks):
                rank, position = chunk % num_processes, chunk // num_processes
                start = ends[rank][position - 1] if position else 0
                if chunk:
                    merged.write(separator.encode("utf-8"))
                parts[rank].seek(start)
                _copy_bytes(parts[rank], merged, ends[rank][position] - start)
            _write_synced(merged, footer.encode("utf-8"))
    finally:
        for handle in parts:
            handle.close()
    os.replace(partial, output_path)
    for rank in range(num_processes):
        part_path(output_path, rank, num_processes).unlink()
        index_path(output_path, rank, num_processes).unlink()


def _copy_bytes(source, target, length: int) -> None:
    """Copies `length` bytes in pieces of at most 1 MiB, so that a huge chunk does not have to fit in memory twice."""
    while length:
        piece = source.read(min(length, 1 << 20))
        assert piece, "a part is shorter than its index says"
        target.write(piece)
        length -= len(piece)

