"""Tagging whole files, streamed and resumable: `predict_file`, the function behind `predict.py`.

`predict_file` reads the input twice, lazily: once to check all of it (so a malformed line at the end fails in
seconds, not after hours of tagging) and count units for the progress bar, then in chunks of `chunk_size` units
(sentences; documents for PubTator): tag, write, flush. Memory is bounded by a chunk (and by the longest sentence), not
by the file. Output goes to `OUT.partial`; after each chunk, `OUT.progress.json` records the units done and the bytes
of `OUT.partial` that hold them. `resume=True` truncates `OUT.partial` to those bytes, skips the units done and carries
on; at the end `OUT.partial` becomes `OUT`. A resumed run's output equals an uninterrupted one's.

Under `accelerate launch` with several processes, each process reads (only its own byte range of a CoNLL, text or
PubTator file), checks, tags, stitches and writes its own contiguous share of the units to its own resumable part, and
the main process merges the parts in input order: the output is byte-identical to a one-process run's
(`hstl.inference.sharding`).

Formats (picked from the input file name, or forced) are those of `hstl.formats`: CoNLL in gives CoNLL out (one label
per input token; one column per head with merge "none"), text in gives JSON Lines, PubTator in gives PubTator with
predicted annotation lines in place of the input's. Merge policies: `hstl.inference.merging`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

from ..errors import CorpusFormatError, PredictionInputError, disk_full_error, is_disk_full
from ..fingerprint import file_sha256
from ..formats import FORMATS, InputFormat, detect_format
from ..formats.common import PathLike
from ..hub import model_source
from ..locking import OutputLock, lock_for_all_processes
from .loading import (
    WindowSettings, autocast_to, check_speed_options, check_window_settings, load_model, load_model_config,
    load_tokenizer_of,
    quantize_linear_layers, resolve_tasks, window_settings,
)
from .merging import check_merge_policy, keep_entity_types_of_heads
from .outputs import STDIO, StreamOutput, check_output_path, check_same_run, is_stream, readable_input

logger = logging.getLogger(__name__)

Unit = TypeVar("Unit")
DEFAULT_CHUNK_SIZE = 1000
PARTIAL_SUFFIX = ".partial"
PROGRESS_SUFFIX = ".progress.json"
LOCK_SUFFIX = ".lock"


def tag_units(
    model, tokenizer, units: Sequence[Any], input_format: InputFormat, tasks: Sequence[str], settings: WindowSettings,
    merge: str, accelerator=None, across_processes: bool = True, on_sentences_tagged=None,
    entity_type_of: Mapping[str, Mapping[str, str]] | None = None, entity_types: Sequence[str] | None = None,
) -> str:
    """Tags a chunk of units (all their sentences in one call) and renders them in the output format, typed by
    `entity_type_of` (the model's `config.entity_types`), keeping only mentions of the shared types `entity_types`
    when given; `across_processes=False`: this process tags the chunk alone (see `tag_sentences`)."""
    from .tagging import labels_per_sentence, tag_sentences_with_marginals

    sentences_of_units = [input_format.unit_sentences(unit) for unit in units]
    all_sentences = [words for sentences in sentences_of_units for words in sentences]
    tagged = tag_sentences_with_marginals(model, tokenizer, all_sentences, tasks, settings=settings,
                                          accelerator=accelerator, across_processes=across_processes,
                                          on_sentences_tagged=on_sentences_tagged)
    labels_by_task = tagged.labels
    if entity_types is not None:
        labels_by_task = keep_entity_types_of_heads(labels_by_task, entity_type_of, entity_types)
    labels, marginals = labels_per_sentence(labels_by_task), labels_per_sentence(tagged.marginals)
    rendered, first = [], 0
    for unit, sentences in zip(units, sentences_of_units):
        last = first + len(sentences)
        rendered.append(input_format.render_unit(unit, labels[first:last], merge, marginals[first:last],
                                                 entity_type_of))
        first = last
    return input_format.separator.join(rendered)


def _chunks(units: Iterable[Unit], size: int) -> Iterator[list[Unit]]:
    iterator = iter(units)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


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

    def __init__(self) -> None:
        self._model = None

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
    # Checks all of the input, holding none of it; under `accelerate launch`, each process checks its own share.
    total_units = sum(1 for _ in input_format.read_units(input_path)) if _launched_processes() == 1 else 0
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

    def load_tagger() -> _ChunkTagger:  # after the outputs are checked, so that a refused --resume fails at once
        model = (loaded_model or LoadedModel()).get(load_prepared_model)
        return _ChunkTagger(model, tokenizer, input_format, tasks, settings, options.merge, accelerator,
                            across_processes=accelerator.num_processes == 1, dtype=options.dtype,
                            entity_type_of=config.entity_types, entity_types=options.entity_types)

    if accelerator.num_processes > 1:
        return _predict_sharded(load_tagger, accelerator, input_format, input_path, signature, summary, options)
    with _output_lock(output_path):
        output = StreamOutput(output_path) if is_stream(output_path) else \
            ResumableOutput(output_path, signature, options.resume)
        summary.units_done = output.units_done
        try:
            summary.complete = _tag_in_chunks(load_tagger(), input_path, output, total_units, options,
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


@dataclass(frozen=True)
class _ChunkTagger:
    """Everything `tag_units` needs besides the units."""

    model: Any
    tokenizer: Any
    input_format: InputFormat
    tasks: list[str]
    settings: WindowSettings
    merge: str
    accelerator: Any
    across_processes: bool = True
    dtype: str = "fp32"
    entity_type_of: Mapping[str, Mapping[str, str]] | None = None
    entity_types: Sequence[str] | None = None

    def __call__(self, units: Sequence[Any], progress_bar=None) -> str:
        """Tags and renders `units`; a `progress_bar` counting sentences moves batch by batch (units are sentences),
        one counting documents chunk by chunk (by the caller)."""
        per_batch = progress_bar.update if progress_bar is not None and self.input_format.unit_name == "sentences" \
            else None
        with autocast_to(self.dtype, self.accelerator.device.type):
            return tag_units(self.model, self.tokenizer, units, self.input_format, self.tasks, self.settings,
                             self.merge, self.accelerator, self.across_processes, on_sentences_tagged=per_batch,
                             entity_type_of=self.entity_type_of, entity_types=self.entity_types)


def _tag_chunk(tagger: _ChunkTagger, chunk: Sequence[Any], progress_bar) -> str:
    """`tagger(chunk)` with the bar moved by every unit of the chunk: per batch where it can, the rest at the end
    (documents, and sentences without words, which need no batch)."""
    before = progress_bar.n
    rendered = tagger(chunk, progress_bar)
    progress_bar.update(len(chunk) - (progress_bar.n - before))
    return rendered


def _tag_in_chunks(tagger: _ChunkTagger, input_path: Path, output: ResumableOutput, total_units: int,
                   options: PredictionOptions, show_bar: bool) -> bool:
    """Tags and writes the units not done yet, chunk by chunk; False when stopped by `options.stop_after_chunks`."""
    from tqdm.auto import tqdm

    input_format = tagger.input_format
    if output.units_done == 0 and output.bytes_written == 0:
        output.append(input_format.header(input_path), 0)
    units = itertools.islice(input_format.read_units(input_path), output.units_done, None)
    show_bar = show_bar and options.show_progress
    with tqdm(total=total_units, initial=output.units_done, unit=tagger.input_format.unit_name[:-1], desc="Tagging",
              disable=not show_bar) as progress_bar:
        for chunks_done, chunk in enumerate(_chunks(units, options.chunk_size)):
            if options.stop_after_chunks is not None and chunks_done >= options.stop_after_chunks:
                return False
            separator = input_format.separator if output.units_done else ""
            output.append(separator + _tag_chunk(tagger, chunk, progress_bar), len(chunk))
    return True


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


def _own_share(accelerator, input_format: InputFormat, input_path: Path):
    """This process's share of the input (`hstl.inference.sharding.input_shares`), checked in every process before
    the model loads, and the unit counts of all shares; a malformed share stops every process, with its error."""
    from accelerate.utils import gather_object

    from .sharding import input_shares

    share, error = None, None
    try:
        share = input_shares(input_format, input_path, accelerator.process_index, accelerator.num_processes)
    except (CorpusFormatError, PredictionInputError) as caught:
        error = caught
    outcomes = gather_object([(str(error) if error else None, share.count if share else 0)])
    if error is not None:
        raise error
    others_error = next((message for message, _ in outcomes if message is not None), None)
    if others_error is not None:
        raise PredictionInputError(others_error)
    return share, [count for _, count in outcomes]


def _predict_sharded(load_tagger, accelerator, input_format: InputFormat, input_path: Path, signature: dict[str, Any],
                     summary: PredictionSummary, options: PredictionOptions) -> PredictionSummary:
    """`predict_file` under `accelerate launch` with several processes: tag own share, then the main process merges,
    the output locked by the main process meanwhile."""
    signature = {**signature, "num_processes": accelerator.num_processes}
    lock = _lock_for_all_processes(accelerator, summary.output_path)
    try:
        return _tag_shares(load_tagger, accelerator, input_format, input_path, signature, summary, options)
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
                summary: PredictionSummary, options: PredictionOptions) -> PredictionSummary:
    """Each process tags its own share into its part; the main process merges the parts when all are complete."""
    from accelerate.utils import gather_object

    from .sharding import ShardOutput, merge_parts

    rank, num_processes = accelerator.process_index, accelerator.num_processes
    share, counts = _own_share(accelerator, input_format, input_path)
    summary.total_units = sum(counts)
    shard = ShardOutput(summary.output_path, signature, options.resume, rank, num_processes)
    try:
        complete = _tag_own_chunks(load_tagger(), share, shard, rank, num_processes, options,
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


def _tag_own_chunks(tagger: _ChunkTagger, share, shard, rank: int, num_processes: int, options: PredictionOptions,
                    show_bar: bool) -> bool:
    """Tags and writes this process's chunks not done yet; False when stopped by `options.stop_after_chunks`."""
    from tqdm.auto import tqdm

    done_units = min(shard.chunks_done * options.chunk_size, share.count)
    units = itertools.islice(share.read(), done_units, None)
    show_bar = show_bar and options.show_progress
    with tqdm(total=share.count, initial=done_units, unit=tagger.input_format.unit_name[:-1],
              desc=f"Tagging (process {rank} of {num_processes})", disable=not show_bar) as progress_bar:
        for tagged_now, chunk in enumerate(_chunks(units, options.chunk_size)):
            if options.stop_after_chunks is not None and tagged_now >= options.stop_after_chunks:
                return False
            separator = tagger.input_format.separator if shard.chunks_done else ""
            shard.append(separator + _tag_chunk(tagger, chunk, progress_bar))
    return True


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
