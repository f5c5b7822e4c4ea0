"""Tagging whole files, streamed and resumable: `predict_file`, the function behind `predict.py`.

`predict_file` cuts the input into pieces (byte ranges that start where a unit starts) and reads it twice, lazily,
piece by piece in worker processes: once to check all of it (so a malformed line at the end fails in seconds, not
after hours of tagging) and count units for the progress bar, then to tag it through the feed of
`hstl.inference.feed` (workers read, split, tokenize and batch ahead of the model; a thread stitches, merges and
writes behind it), written in chunks of `chunk_size` units (sentences; documents for PubTator and BioC). Memory is
bounded by a few pieces and chunks (and by the longest sentence), not by the file. Output goes to `OUT.partial`;
after each chunk, `OUT.progress.json` records the units done and the bytes of `OUT.partial` that hold them.
`resume=True` truncates `OUT.partial` to those bytes, skips the units done and carries on; at the end `OUT.partial`
becomes `OUT`. A resumed run's output equals an uninterrupted one's.

Under `accelerate launch` with several processes, each process checks, tags, stitches and writes its own contiguous
run of the pieces to its own resumable part, and the main process merges the parts in input order: the output is
byte-identical to a one-process run's (`hstl.inference.sharding`).

Formats (picked from the input file name, or forced) are those of `hstl.formats`: CoNLL in gives CoNLL out (one label
per input token; one column per head with merge "none"), text in gives JSON Lines, PubTator in gives PubTator with
predicted annotation lines in place of the input's. Merge policies: `hstl.inference.merging`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..errors import CorpusFormatError, PredictionInputError, disk_full_error, is_disk_full
from ..fingerprint import file_sha256
from ..formats import FORMATS, InputFormat, detect_format
from ..formats.common import PathLike
from ..hub import model_source
from ..locking import OutputLock, lock_for_all_processes
from .loading import (
    WindowSettings, check_speed_options, check_window_settings, load_model, load_model_config, load_tokenizer_of,
    quantize_linear_layers, resolve_tasks, window_settings,
)
from .feed import DEFAULT_BATCH_TOKENS
from .merging import check_merge_policy
from .outputs import STDIO, StreamOutput, check_output_path, check_same_run, is_stream, readable_input
from .sharding import count_units, piece_ranges, whole_file

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 1000
PARTIAL_SUFFIX = ".partial"
PROGRESS_SUFFIX = ".progress.json"
LOCK_SUFFIX = ".lock"


def tag_units(
    model, tokenizer, units: Sequence[Any], input_format: InputFormat, tasks: Sequence[str], settings: WindowSettings,
    merge: str, accelerator=None, entity_type_of: Mapping[str, Mapping[str, str]] | None = None,
    entity_types: Sequence[str] | None = None, dtype: str = "fp32", feed_settings=None,
) -> str:
    """Tags a chunk of units in this thread, as the feed of `predict_file` does (`hstl.inference.feed`: same batches,
    same output), and renders them in the output format, typed by `entity_type_of` (the model's
    `config.entity_types`), keeping only mentions of the shared types `entity_types` when given."""
    from .feed import FeedSettings, Renderer, prepare_units, tag_piece

    feed_settings = feed_settings or FeedSettings(max_windows=settings.batch_size)
    device = accelerator.device if accelerator is not None else model.device
    config = getattr(model, "module", model).config
    piece = prepare_units(list(units), input_format, tokenizer, settings, feed_settings)
    render = Renderer(config, input_format, list(tasks), merge, entity_type_of, entity_types)
    rendered = render(tag_piece(model, piece, render.tasks, device, dtype))
    return input_format.separator.join(rendered)


class ResumableOutput:
    """`OUT.partial` plus `OUT.progress.json` (units done, bytes of `OUT.partial` holding them, run signature).

    The progress file is replaced atomically after the chunk's bytes are flushed to disk, so it never claims more
    than the partial file holds; bytes written after it (a run killed mid-chunk) are cut off on resume.
    One process only; several write parts instead (`hstl.inference.sharding`).
    """

    def __init__(self, output_path: Path, signature: dict[str, Any], resume: bool) -> None:
        self.output_path = output_path
        self.partial_path = output_path.with_name(output_path.name + PARTIAL_SUFFIX)
        self.progress_path = output_path.with_name(output_path.name + PROGRESS_SUFFIX)
        self.signature = signature
        self.units_done, self.bytes_written = self._resume_point() if resume else (0, 0)
        if not resume:  # a stale record must not describe the new partial output
            self.progress_path.unlink(missing_ok=True)
        self._handle = None  # opened at the first write: a run that fails before it (a model load) leaves no file

    def _open(self):
        if self._handle is None:
            self.output_path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.partial_path, "r+b" if self.bytes_written else "wb")
            self._handle.truncate(self.bytes_written)
            self._handle.seek(self.bytes_written)
        return self._handle

    def _resume_point(self) -> tuple[int, int]:
        """(units done, bytes to keep) of the interrupted run, or (0, 0) when there is none to resume."""
        if not (self.progress_path.is_file() and self.partial_path.is_file()):
            logger.info("--resume: no interrupted run at %s; starting from the beginning", self.partial_path)
            return 0, 0
        try:
            progress = json.loads(self.progress_path.read_text(encoding="utf-8"))
            units_done, output_bytes = progress["units_done"], progress["output_bytes"]
            signature = progress["signature"]
        except (ValueError, KeyError, TypeError) as error:
            raise PredictionInputError(
                f"{self.progress_path}: expected the progress record of an interrupted run, got unreadable JSON "
                f"({error}); run without --resume to start over"
            ) from None
        check_same_run(signature, self.signature, self.progress_path)
        if self.partial_path.stat().st_size < output_bytes:
            raise PredictionInputError(
                f"--resume: expected {self.partial_path} to hold the {output_bytes} bytes its progress record "
                f"claims, got {self.partial_path.stat().st_size}; run without --resume to start over"
            )
        logger.info("Resuming after %d unit(s) already in %s", units_done, self.partial_path)
        return units_done, output_bytes

    def append(self, text: str, units: int) -> None:
        """Writes the output of the next `units` units and records them as done."""
        handle = self._open()
        self.units_done += units
        handle.write(text.encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())
        self.bytes_written = handle.tell()
        progress = {"units_done": self.units_done, "output_bytes": self.bytes_written, "signature": self.signature}
        staging = self.progress_path.with_name(self.progress_path.name + ".tmp")
        staging.write_text(json.dumps(progress, indent=2), encoding="utf-8")
        os.replace(staging, self.progress_path)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def finish(self, footer: str = "") -> None:
        """Writes `footer`, moves the complete output into place and forgets the progress. A run killed in here
        resumes from the progress record, which does not count the footer, so the footer is never written twice."""
        self._open()
        if footer:
            with open(self.partial_path, "ab") as handle:
                handle.write(footer.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
        self.close()
        os.replace(self.partial_path, self.output_path)
        self.progress_path.unlink(missing_ok=True)


@dataclass
class PredictionOptions:
    """What `predict_file` does besides which model, input and output (the flags of `predict.py`)."""

    tasks: list[str] | None = None
    entity_types: list[str] | None = None
    """Shared entity types to keep (`predict.py --entity_types`); None keeps all."""
    input_format: str | None = None
    merge: str = "confidence"
    batch_size: int | None = None
    max_length: int | None = None
    overlap: int | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    resume: bool = False
    cpu: bool = False
    dtype: str = "fp32"
    """Precision of the forward pass: fp32, bf16 (GPU or CPU), fp16 (GPU)."""
    quantize: str | None = None
    """"int8": dynamic int8 quantization of the Linear layers (CPU)."""
    batch_tokens: int = DEFAULT_BATCH_TOKENS
    """Padded sub-tokens per batch (`hstl.inference.feed`); `batch_size`, when given, also caps windows per batch."""
    num_workers: int | None = None
    """Worker processes reading and preparing batches ahead of the model; None: the machine's cores, shared among
    the processes of a launched run; 0: none (this process does it)."""
    show_progress: bool = True
    stop_after_chunks: int | None = None
    """Return (as if killed) after this many chunks, leaving the partial output and its progress: for tests."""


@dataclass
class PredictionSummary:
    """What `predict_file` did."""

    output_path: Path
    input_format: str
    tasks: list[str]
    total_units: int
    units_done: int
    complete: bool


def _check_paths(input_path: Path, output_path: Path) -> None:
    if not input_path.is_file():
        got = "a folder" if input_path.is_dir() else "no such file"
        raise FileNotFoundError(f"{input_path}: expected an input file, got {got}")
    if output_path.resolve() == input_path.resolve():
        raise PredictionInputError(f"--output: expected a file other than the input, got {output_path}")


def _run_signature(input_path: Path, model_dir: Path, format_name: str, tasks: list[str], merge: str,
                   settings: WindowSettings, options: PredictionOptions) -> dict[str, Any]:
    """What must not change between an interrupted run and its resumption: the input (its content's sha256), the
    model (its Hub id and commit, or its folder, as `hstl.hub.model_source` records it) and every setting that
    shapes the output, the chunk and batch sizes included (they decide which sentences are padded together)."""
    source = model_source(model_dir)
    if "revision" not in source:  # a local folder: its path says nothing of what it holds now
        source["model_files"] = _model_files_signature(Path(model_dir))
    return {
        "input": str(input_path.resolve()), "input_bytes": input_path.stat().st_size,
        "input_sha256": file_sha256(input_path), **source, "format": format_name, "tasks": tasks, "merge": merge,
        "max_length": settings.max_length, "overlap": settings.overlap, "batch_size": settings.batch_size,
        "chunk_size": options.chunk_size, "dtype": options.dtype, "quantize": options.quantize,
        "entity_types": options.entity_types,
    }


def _model_files_signature(model_dir: Path) -> dict[str, Any]:
    """A local folder's config.json (its content: labels, entity types, windows) and weights (size and modification
    time), so that a model retrained or re-mapped in the same folder is not resumed as if it were the same (a Hub
    snapshot is pinned by its commit)."""
    values: dict[str, Any] = {}
    config_file, weights = model_dir / "config.json", model_dir / "model.safetensors"
    if config_file.is_file():
        values["config_sha256"] = hashlib.sha256(config_file.read_bytes()).hexdigest()
    if weights.is_file():
        values["weights_bytes"], values["weights_mtime_ns"] = weights.stat().st_size, weights.stat().st_mtime_ns
    return values


class LoadedModel:
    """The model `predict_file` tags with, loaded (quantized, prepared by the accelerator) at its first use and kept:
    `predict_path` hands one to every file of a folder, so that the model is loaded once, not once per file."""

    def __init__(self, model: Any = None) -> None:
        self._model = model  # given: a model (or a stand-in with its `tag` and `config`) already loaded

    def get(self, load: Callable[[], Any]) -> Any:
        if self._model is None:
            self._model = load()
        return self._model


def predict_file(
    model_dir: PathLike, input_path: PathLike, output_path: PathLike, options: PredictionOptions | None = None,
    loaded_model: LoadedModel | None = None,
) -> PredictionSummary:
    """Tags a CoNLL, text or PubTator file with a model folder and writes the predictions (see the module docstring).
    `loaded_model`: the model already loaded by an earlier call with the same folder and options (`predict_path`).

    Raises:
        FileNotFoundError, CorpusFormatError, PredictionInputError: naming the file (and line) or the option, for a
            missing file, a malformed input, an unknown task or bad settings; before the model is loaded.
    """
    options = options or PredictionOptions()
    model_dir, input_path, output_path = Path(model_dir), Path(input_path), Path(output_path)
    input_format = FORMATS[detect_format(input_path, options.input_format)]
    check_merge_policy(options.merge)
    if options.chunk_size < 1:
        raise PredictionInputError(f"--chunk_size: expected a positive number of units, got {options.chunk_size}")
    _check_paths(input_path, output_path)
    config = load_model_config(model_dir)
    tasks = resolve_tasks(config, options.tasks, options.entity_types)
    settings = window_settings(model_dir, options.max_length, options.overlap, options.batch_size, config=config)
    feed = _feed_settings(options)
    # Checks all of the input, holding none of it, in the feed's pieces, read by its workers; under `accelerate
    # launch`, each process checks its own share.
    pieces, piece_counts = [], []
    if _launched_processes() == 1:
        pieces = piece_ranges(whole_file(input_path), input_format.name, feed.piece_bytes)
        piece_counts = count_units(pieces, input_format.name, feed.num_workers)
    total_units = sum(piece_counts)
    # torch and friends are imported only now, so that bad arguments and inputs are reported in a moment; every
    # check that can fail comes before the model loads (and prints its progress bar).
    from accelerate import Accelerator

    import torch

    check_speed_options(options.dtype, options.quantize,
                        "cuda" if torch.cuda.is_available() and not options.cpu else "cpu")
    tokenizer = load_tokenizer_of(model_dir)
    check_window_settings(tokenizer, settings)
    accelerator = Accelerator(cpu=options.cpu)
    _check_process_group(accelerator)
    signature = _run_signature(input_path, model_dir, input_format.name, tasks, options.merge, settings, options)
    summary = PredictionSummary(output_path, input_format.name, tasks, total_units, 0, complete=False)

    def load_prepared_model():
        model = load_model(model_dir, config)
        if options.quantize == "int8":
            model = quantize_linear_layers(model)
        return accelerator.prepare_model(model, evaluation_mode=True)

    def load_tagger() -> _Tagger:  # after the outputs are checked, so that a refused --resume fails at once
        model = (loaded_model or LoadedModel()).get(load_prepared_model)
        from .feed import Renderer

        render = Renderer(config, input_format, tasks, options.merge, config.entity_types, options.entity_types)
        return _Tagger(model, tokenizer, settings, feed, accelerator.device, options.dtype, render)

    if accelerator.num_processes > 1:
        return _predict_sharded(load_tagger, accelerator, input_format, input_path, signature, summary, options, feed)
    with _output_lock(output_path):
        output = StreamOutput(output_path) if is_stream(output_path) else \
            ResumableOutput(output_path, signature, options.resume)
        summary.units_done = output.units_done
        try:
            tagger = load_tagger()  # before the first write: a model that fails to load leaves no OUT.partial
            if output.units_done == 0 and output.bytes_written == 0:
                output.append(input_format.header(input_path), 0)

            def write(text: str, units: int) -> None:
                output.append((input_format.separator if output.units_done else "") + text, units)

            summary.complete = _tag_pieces(tagger, _skipping(pieces, piece_counts, output.units_done), write,
                                           total_units, output.units_done, options, "Tagging",
                                           show_bar=accelerator.is_local_main_process)
            if summary.complete:
                output.finish(input_format.footer)
        except (OSError, RuntimeError) as error:
            if is_disk_full(error, output_path.parent):
                raise _disk_full(error, output) from None
            raise
        finally:
            output.close()
    summary.units_done = output.units_done
    return summary


def _output_lock(output_path: Path) -> OutputLock:
    """The lock of an output file (`hstl.locking`): `OUT.lock`; a stream is not locked (it has no folder of its
    own to hold a lock file)."""
    from contextlib import nullcontext

    if is_stream(output_path):
        return nullcontext()
    return OutputLock(output_path.with_name(output_path.name + LOCK_SUFFIX), f"--output {output_path}")


def _disk_full(error: OSError, output) -> Exception:
    written = getattr(output, "partial_path", output.output_path)
    return disk_full_error(error, written, "run again with --resume" if isinstance(output, ResumableOutput)
                           else "run again")


def _feed_settings(options: PredictionOptions):
    from .feed import FeedSettings, default_num_workers

    num_workers = default_num_workers(_launched_processes()) if options.num_workers is None else options.num_workers
    return FeedSettings(options.batch_tokens, options.batch_size, num_workers)


def _tags_on_cpu(options: PredictionOptions) -> bool:
    """Whether the model will run on the CPU (`--cpu`, or no CUDA device), told before the input is cut into pieces:
    torch is asked only where an NVIDIA driver is loaded, so that elsewhere bad inputs are still reported before
    torch loads."""
    if options.cpu or not Path("/proc/driver/nvidia").exists():
        return True
    import torch

    return not torch.cuda.is_available()


@dataclass(frozen=True)
class _Tagger:
    """Everything the feed (`hstl.inference.feed.run_feed`) needs besides the input and the output."""

    model: Any
    tokenizer: Any
    settings: WindowSettings
    feed: Any
    device: Any
    dtype: str
    render: Any


def _skipping(pieces: list, counts: list[int], units_done: int) -> list[tuple[Any, int]]:
    """(piece, units of it to skip) for the pieces that hold units not done yet."""
    jobs, first = [], 0
    for piece, count in zip(pieces, counts):
        if first + count > units_done:
            jobs.append((piece, max(0, units_done - first)))
        first += count
    return jobs


def _tag_pieces(tagger: _Tagger, jobs: list[tuple[Any, int]], write: Callable[[str, int], None], total_units: int,
                units_done: int, options: PredictionOptions, description: str, show_bar: bool) -> bool:
    """Tags the units of `jobs` and writes them chunk by chunk through `write(text, units)`; False when stopped by
    `options.stop_after_chunks`."""
    from tqdm.auto import tqdm

    from .feed import ChunkWriter, run_feed

    input_format = tagger.render.input_format
    with tqdm(total=total_units, initial=units_done, unit=input_format.unit_name[:-1], desc=description,
              disable=not (show_bar and options.show_progress)) as progress_bar:
        writer = ChunkWriter(tagger.render, write, options.chunk_size, input_format.separator,
                             options.stop_after_chunks, progress_bar.update)
        return run_feed(tagger.model, tagger.tokenizer, input_format, jobs, tagger.settings, tagger.feed,
                        tagger.device, tagger.dtype, tagger.render, writer)


# ---------------------------------------------------------------------------------------------------------------------
# Several processes: each tags its own chunks (`hstl.inference.sharding`)


def _launched_processes() -> int:
    """How many processes `accelerate launch` (or torchrun) started; 1 without a launcher."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _check_process_group(accelerator) -> None:
    """Processes started by a launcher but not joined in one group would each tag everything into the same files."""
    launched = _launched_processes()
    if launched > accelerator.num_processes:
        raise PredictionInputError(
            f"accelerate launch: expected the {launched} processes it started to form one group, got "
            f"{accelerator.num_processes} ({accelerator.distributed_type}); without a GPU, pass --cpu to predict.py"
        )


def _own_share(accelerator, input_format: InputFormat, input_path: Path, feed):
    """This process's share of the input, the feed's pieces of the whole file that start in its share of the bytes
    (`hstl.inference.sharding.pieces_of_process`), and their unit counts, checked in every process before the model loads, and the unit counts of all shares; a malformed share
    stops every process, with its error."""
    from accelerate.utils import gather_object

    from .sharding import pieces_of_process

    pieces, counts, error = [], [], None
    try:
        pieces = pieces_of_process(piece_ranges(whole_file(input_path), input_format.name, feed.piece_bytes),
                                   accelerator.process_index, accelerator.num_processes)
        counts = count_units(pieces, input_format.name, feed.num_workers)
    except (CorpusFormatError, PredictionInputError) as caught:
        error = caught
    outcomes = gather_object([(str(error) if error else None, sum(counts))])
    if error is not None:
        raise error
    others_error = next((message for message, _ in outcomes if message is not None), None)
    if others_error is not None:
        raise PredictionInputError(others_error)
    return pieces, counts, [count for _, count in outcomes]


def _predict_sharded(load_tagger, accelerator, input_format: InputFormat, input_path: Path, signature: dict[str, Any],
                     summary: PredictionSummary, options: PredictionOptions, feed) -> PredictionSummary:
    """`predict_file` under `accelerate launch` with several processes: tag own share, then the main process merges,
    the output locked by the main process meanwhile."""
    signature = {**signature, "num_processes": accelerator.num_processes}
    lock = _lock_for_all_processes(accelerator, summary.output_path)
    try:
        return _tag_shares(load_tagger, accelerator, input_format, input_path, signature, summary, options, feed)
    finally:
        if lock is not None:
            lock.release()


def _lock_for_all_processes(accelerator, output_path: Path) -> OutputLock | None:
    """The output's lock, taken by the main process for the processes of its launch (`lock_for_all_processes`)."""
    if is_stream(output_path):
        raise PredictionInputError(f"--output: expected a file with {accelerator.num_processes} processes (their "
                                   f"parts are merged into it), got the stream {output_path}")
    return lock_for_all_processes(accelerator, _output_lock(output_path))


def _tag_shares(load_tagger, accelerator, input_format: InputFormat, input_path: Path, signature: dict[str, Any],
                summary: PredictionSummary, options: PredictionOptions, feed) -> PredictionSummary:
    """Each process tags its own share into its part; the main process merges the parts when all are complete."""
    from accelerate.utils import gather_object

    from .sharding import ShardOutput, merge_parts

    rank, num_processes = accelerator.process_index, accelerator.num_processes
    signature = {**signature, "num_processes": num_processes, "chunk_size": options.chunk_size,
                 "piece_bytes": feed.piece_bytes}
    pieces, piece_counts, counts = _own_share(accelerator, input_format, input_path, feed)
    summary.total_units = sum(counts)
    shard = ShardOutput(summary.output_path, signature, options.resume, rank, num_processes)
    try:
        done_units = min(shard.chunks_done * options.chunk_size, sum(piece_counts))

        def write(text: str, units: int) -> None:
            shard.append((input_format.separator if shard.chunks_done else "") + text)

        complete = _tag_pieces(load_tagger(), _skipping(pieces, piece_counts, done_units), write, sum(piece_counts),
                               done_units, options, f"Tagging (process {rank} of {num_processes})",
                               show_bar=accelerator.is_local_main_process)
    finally:
        shard.close()
    chunks_done = gather_object([(shard.chunks_done, complete)])  # also waits for every process
    summary.units_done = sum(min(done * options.chunk_size, count) for (done, _), count in zip(chunks_done, counts))
    summary.complete = all(done for _, done in chunks_done)
    if summary.complete and accelerator.is_main_process:
        merge_parts(summary.output_path, num_processes, [-(-count // options.chunk_size) for count in counts],
                    signature, input_format.header(input_path), input_format.separator, input_format.footer)
    accelerator.wait_for_everyone()  # no process returns before the output is in place
    return summary


# ---------------------------------------------------------------------------------------------------------------------
# A folder of files


def folder_jobs(input_dir: Path, output_dir: Path, requested_format: str | None) -> list[tuple[Path, Path]]:
    """(input file, output file) for every file of `input_dir` (not its subfolders; hidden files skipped), in name
    order, each format detected separately; outputs are `output_dir/<input name><format's output_suffix>`."""
    files = sorted(path for path in input_dir.iterdir() if path.is_file() and not path.name.startswith("."))
    if not files:
        raise PredictionInputError(f"--input: expected a folder holding files to tag, got {input_dir} without any")
    if output_dir.exists() and not output_dir.is_dir():
        raise PredictionInputError(f"--output: expected a folder for the outputs of folder {input_dir}, got a file "
                                   f"{output_dir}")
    if output_dir.resolve() == input_dir.resolve():
        raise PredictionInputError(f"--output: expected a folder other than the input folder, got {output_dir}")
    return [(path, output_dir / (path.name + FORMATS[detect_format(path, requested_format)].output_suffix))
            for path in files]


def _check_stdin_format(spooled: Path) -> None:
    """Standard input has no name to tell its format: only BioC, recognised by its content, goes without --format."""
    try:
        detect_format(spooled)
    except PredictionInputError:
        raise PredictionInputError(f"--input {STDIO}: expected --format ({'|'.join(FORMATS)}) with standard input, "
                                   f"got none, and the input does not start like a BioC collection") from None


def predict_path(model_dir: PathLike, input_path: PathLike, output_path: PathLike,
                 options: PredictionOptions | None = None) -> list[PredictionSummary]:
    """`predict_file` for a file, or for every file of a folder into the folder `output_path` (`folder_jobs`), the
    model loaded once for all of them. With `resume`, a file whose output is complete (no partial output beside it)
    is not tagged again."""
    options = options or PredictionOptions()
    input_path, output_path = Path(input_path), Path(output_path)
    check_output_path(output_path, input_path.is_dir(), options.resume)
    if not input_path.is_dir():
        with readable_input(input_path, options.resume) as readable:
            if readable != input_path and options.input_format is None:
                _check_stdin_format(readable)
            return [predict_file(model_dir, readable, output_path, options)]
    summaries, loaded_model = [], LoadedModel()
    for file_input, file_output in folder_jobs(input_path, output_path, options.input_format):
        leftovers = list(file_output.parent.glob(file_output.name + ".p*")) if file_output.parent.is_dir() else []
        if options.resume and file_output.is_file() and not leftovers:
            logger.info("--resume: %s is complete; skipped", file_output)
            continue
        summary = predict_file(model_dir, file_input, file_output, options, loaded_model)
        summaries.append(summary)
        if not summary.complete:
            break
    return summaries
