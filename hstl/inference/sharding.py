"""Whole-file tagging split among the processes of `accelerate launch`, and the pieces every run reads: each process
reads, tags and writes its own contiguous run of the input's pieces.

Who reads what: a line-based input (CoNLL, text, PubTator) is cut by bytes, in one cheap pass over its lines (no
sentence splitting, no tokenization), into pieces of about a given size (`piece_ranges`), each cut made before a
block of lines (between separator lines) that starts a unit: a CoNLL sentence (not after a lone `-DOCSTART-`, which
belongs to the sentence after it), a text paragraph holding text, a PubTator document. BioC is cut the same way
before a document: in XML a `<document` tag that follows a `</document>` (`hstl.formats.bioc.xml_document_cuts`), in
JSON an object of the "documents" array (`json_document_starts`); a piece's reader parses the collection's opening
and its own range only. Each piece is read with the line, character and paragraph numbers it starts at, so offsets,
document ids and error lines are those of reading the whole file. Process `r` takes the pieces from the piece start
nearest `size * r / N` bytes to the next process's (`pieces_of_process`): the pieces, and so the batches formed in
them, are the same whatever the number of processes.

Each process tags its share in chunks of `chunk_size` units and appends them to its part `OUT.part{rank}-of{N}`;
after each chunk, once the part's bytes are on disk, it appends the part's new length to
`OUT.part{rank}-of{N}.index` (first line: the run signature as JSON), so the index never claims more than the part
holds. When every process is done, the main process writes header, the parts in rank order (`separator` between
two non-empty ones) and footer to `OUT.partial`, moves it to `OUT` and removes the parts: the output is
byte-identical to a one-process run's. Memory is bounded by a chunk in every process, the merge included.

`--resume` is per part: each process truncates its part to the length its index last recorded and skips the chunks
already there. A run killed during the merge resumes with nothing to tag and merges again. The signature holds the
input's size and time, the number of processes, the chunk size and the piece size, which decide who tags what;
resuming with others is refused.
"""

from __future__ import annotations

import functools
import json
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import PredictionInputError
from ..formats.bioc import BIOC_JSON, BIOC_XML, json_document_starts, xml_document_cuts
from ..formats.common import FileRange, is_separator
from ..formats.conll import DOCSTART
from .outputs import check_same_run

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
    check_same_run(recorded, signature, index)
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


def merge_parts(output_path: Path, num_processes: int, chunks_per_part: list[int], signature: dict[str, Any],
                header: str, separator: str, footer: str) -> None:
    """Main process, after every part is complete: the output in input order, then the parts are removed."""
    ends = [read_index(output_path, rank, num_processes, signature) for rank in range(num_processes)]
    for rank, expected in enumerate(chunks_per_part):
        assert len(ends[rank]) == expected, f"part {rank} holds {len(ends[rank])} of its {expected} chunks"
    partial = output_path.with_name(output_path.name + ".partial")
    with open(partial, "wb") as merged:
        merged.write(header.encode("utf-8"))
        wrote_part = False
        for rank in range(num_processes):
            if not ends[rank]:
                continue
            if wrote_part:
                merged.write(separator.encode("utf-8"))
            with open(part_path(output_path, rank, num_processes), "rb") as part:
                _copy_bytes(part, merged, ends[rank][-1])
            wrote_part = True
        _write_synced(merged, footer.encode("utf-8"))
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



# ---------------------------------------------------------------------------------------------------------------------
# Who reads what


@dataclass
class _Block:
    """A run of lines between separator lines: where it starts, and what decides whether a cut may go before it."""

    start: int
    first_line: int
    first_character: int
    has_text: bool = False
    docstart_only: bool = True


def _blocks(path: Path) -> Iterator[_Block]:
    """The blocks of a line-based file, each yielded once its last line is read (one pass, one block in memory).
    Undecodable bytes are replaced here: the process whose range holds them reports them, naming the line."""
    block, byte, character = None, 0, 0
    with open(path, "rb") as handle:
        for line_number, raw_line in enumerate(handle, start=1):
            line = raw_line.decode("utf-8", errors="replace").removeprefix("\ufeff" if line_number == 1 else "")
            if is_separator(line):
                if block is not None:
                    yield block
                block = None
            else:
                block = block or _Block(byte, line_number, character)
                block.has_text = block.has_text or bool(line.strip())
                block.docstart_only = block.docstart_only and line.split(None, 1)[:1] == [DOCSTART]
            byte, character = byte + len(raw_line), character + len(line)
    if block is not None:
        yield block


def _may_cut_before(format_name: str, block: _Block, previous: _Block | None) -> bool:
    """Whether a unit starts at `block` and none before it continues into it."""
    if format_name == "text":
        return block.has_text
    if format_name == "conll":
        return not block.docstart_only and not (previous is not None and previous.docstart_only)
    return True  # PubTator: every block is (or starts) a document


def _range_starts(path: Path, format_name: str) -> Iterator[FileRange]:
    """Where a range may start (end left 0): every block that may start one, but the first (range 0 starts at byte 0
    and must hold a unit, or its reader would report a file without any)."""
    if format_name == BIOC_XML:  # every cut follows a document already
        yield from (FileRange(str(path), byte, 0, line) for byte, line in xml_document_cuts(path))
        return
    if format_name == BIOC_JSON:
        starts = json_document_starts(path)
        next(starts, None)  # the first document
        yield from (FileRange(str(path), byte, 0, line) for byte, line in starts)
        return
    paragraph, previous, first_seen = 1, None, False
    for block in _blocks(path):
        if _may_cut_before(format_name, block, previous):
            if first_seen:
                yield FileRange(str(path), block.start, 0, block.first_line, block.first_character, paragraph)
            first_seen = True
        paragraph += format_name == "text" and block.has_text
        previous = block


def piece_ranges(within: FileRange, format_name: str, piece_bytes: int) -> list[FileRange]:
    """`within` (a file's whole range, or one process's share) cut into consecutive pieces of about `piece_bytes`
    bytes, each cut made where a range may start (`_range_starts`: before a unit no earlier unit continues into), so
    that each piece reads as its own units with the line, character and paragraph numbers of the whole file. The
    pieces are what the tagging feed's workers read (`hstl.inference.feed`); `within` itself when it has no cut."""
    path = Path(within.path)
    starts = [within]
    if within.end > within.start:
        for start in _range_starts(path, format_name):
            if start.start >= within.end:
                break
            if start.start - starts[-1].start >= piece_bytes:
                starts.append(start)
    ends = [start.start for start in starts[1:]] + [within.end]
    return [FileRange(start.path, start.start, end, start.first_line, start.first_character, start.first_paragraph)
            for start, end in zip(starts, ends)]


def _count_units(piece: FileRange, format_name: str) -> int:
    from ..formats import FORMATS

    return sum(1 for _ in FORMATS[format_name].read_units(piece))


def _worker_context():
    """Forked workers start at once and inherit what is loaded; spawned ones where fork is unavailable."""
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def count_units(pieces: list[FileRange], format_name: str, num_workers: int) -> list[int]:
    """The units of each piece, read and checked by `num_workers` processes (0: this one) before anything is tagged;
    the error of the first malformed piece (naming the file and line) is raised."""
    count = functools.partial(_count_units, format_name=format_name)
    if num_workers == 0 or len(pieces) <= 1:
        return [count(piece) for piece in pieces]
    with ProcessPoolExecutor(min(num_workers, len(pieces)), mp_context=_worker_context()) as pool:
        return list(pool.map(count, pieces))


def whole_file(path: Path) -> FileRange:
    """All of `path` as one `FileRange` (what a one-process run reads)."""
    return FileRange(str(path), 0, path.stat().st_size)


def pieces_of_process(pieces: list[FileRange], rank: int, num_processes: int) -> list[FileRange]:
    """The contiguous run of the whole file's `pieces` that process `rank` tags: process `r`'s run starts at the
    piece start nearest to `size * r / num_processes` bytes (the later on a tie), so that the pieces, hence the
    batches, are those of a one-process run. A run may be empty (when there are fewer pieces than processes, or when
    two processes' nearest piece start is the same); process 0's always holds the first piece, even of an empty
    file."""
    size = pieces[-1].end
    cuts = [0]
    for later_rank in range(1, num_processes):
        target = size * later_rank // num_processes
        starts = range(max(1, cuts[-1]), len(pieces) + 1)  # len(pieces): at the end of the file
        cuts.append(min(starts, key=lambda index: (abs((pieces[index].start if index < len(pieces) else size) - target),
                                                   -index)))
    cuts.append(len(pieces))
    return pieces[cuts[rank]:cuts[rank + 1]]
