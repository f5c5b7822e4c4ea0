"""Faults an unlucky user meets, each scripted: two writers of one output, a used output folder, resumes whose
config, input or checkpoint files changed, outputs that are folders or streams, a full disk, model folders that do not
load, and corpora a head cannot learn from. Each ends in one line and exit status 2, or in the right output."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from conftest import tiny_run_config
from hstl.checkpointing import TRAINER_STATE, list_checkpoints
from hstl.cli import run_cli
from hstl.errors import CheckpointError, CorpusFormatError, DiskFullError, OutputInUseError, RunConfigError
from hstl.inference.outputs import is_stream
from hstl.run_config import run_config_from_dict
from hstl.training import LoopArguments, run_training

import predict  # the script at the repository root

REPO = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ACCELERATE_", "LOCAL_RANK"))}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return env


def _values(tokenizer_dir: Path, **training) -> dict:
    values = tiny_run_config(**training)
    values["model"]["tokenizer"] = str(tokenizer_dir)
    for task in values["tasks"]:
        task["max_validation_sentences"] = task["max_test_sentences"] = 10
    return values


def _train(tmp_path: Path, values: dict, name: str = "out", **loop):
    run_config = run_config_from_dict(values, source="test.yaml", base_dir=tmp_path)
    return run_training(run_config, LoopArguments(output_dir=str(tmp_path / name), cpu=True, **loop))


def _predict(argv: list[str], capsys) -> tuple[int, list[str]]:
    """predict.py's main in this process; returns (exit status, stderr lines)."""
    code = run_cli(lambda: predict.main(argv))
    return code, capsys.readouterr().err.strip().splitlines()


def _text_input(tmp_path: Path, name: str = "in.txt") -> Path:
    path = tmp_path / name
    path.write_text("Aspirin induced ulcers in rats. Cisplatin-induced nephrotoxicity was reduced in mice.\n\n"
                    "Hepatitis B was seen in 3 patients.\n", encoding="utf-8")
    return path


# Holds the lock of a path (hstl.locking) until killed: another run, as a second writer would meet it.
HOLD_LOCK = """
import sys, time
from pathlib import Path
from hstl.locking import OutputLock
held = OutputLock(Path(sys.argv[1]), "test").acquire()
print("held", flush=True)
time.sleep(300)
"""


def _hold_lock(tmp_path: Path, lock_file: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock_file)], env=_env(tmp_path),
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


# ---------------------------------------------------------------------------------------------------------------------
# One writer per output


def test_a_second_prediction_into_the_same_output_stops_at_once_naming_the_first(tiny_model_dir, tmp_path, capsys):
    path, out = _text_input(tmp_path), tmp_path / "out.jsonl"
    argv = ["--model", str(tiny_model_dir), "--input", str(path), "--output", str(out)]
    holder = _hold_lock(tmp_path, tmp_path / "out.jsonl.lock")
    try:
        code, err = _predict(argv, capsys)
    finally:
        holder.kill()
        holder.wait()
    assert code == 2 and len(err) == 1 and f"pid {holder.pid} on host" in err[0] and "--output" in err[0]
    assert sorted(item.name for item in tmp_path.iterdir()) == ["in.txt", "out.jsonl.lock"]  # nothing written
    # the holder was killed: its lock file is left, but the lock went with it
    code, err = _predict(argv, capsys)
    assert code == 0 and out.is_file() and not (tmp_path / "out.jsonl.lock").exists()


def test_a_second_training_run_into_the_same_folder_stops_at_once(tiny_tokenizer_dir, tmp_path):
    holder = _hold_lock(tmp_path, tmp_path / "out" / ".hstl.lock")
    try:
        with pytest.raises(OutputInUseError, match=f"--output_dir .*pid {holder.pid} on host"):
            _train(tmp_path, _values(tiny_tokenizer_dir))
    finally:
        holder.kill()
        holder.wait()
    assert sorted(item.name for item in (tmp_path / "out").iterdir()) == [".hstl.lock"]


# ---------------------------------------------------------------------------------------------------------------------
# A used folder


def test_a_folder_holding_a_run_is_refused_unless_overwritten_which_clears_that_run(tiny_tokenizer_dir, tmp_path):
    _train(tmp_path, _values(tiny_tokenizer_dir, checkpointing_steps=2, eval_steps=2))
    out = tmp_path / "out"
    with pytest.raises(RunConfigError) as refused:
        _train(tmp_path, _values(tiny_tokenizer_dir, encoder_learning_rate=5e-4))
    message = str(refused.value)
    assert "\n" not in message and f"--output_dir {out}: expected a new or empty folder" in message
    assert "all_results.json" in message and "--overwrite_output_dir" in message
    second = _train(tmp_path, _values(tiny_tokenizer_dir, checkpointing_steps=3, eval_steps=3),
                    overwrite_output_dir=True)
    assert [path.name for path in list_checkpoints(out)] == ["step_00000003", "step_00000006"]
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in log if "validation_f1/mean" in record] == [3, 6]
    assert json.loads((out / "all_results.json").read_text())["best_validation_mean_f1"] == second.best_score


def test_resume_latest_without_a_checkpoint_does_not_start_over_a_folder_holding_a_model(tiny_tokenizer_dir,
                                                                                           tmp_path):
    _train(tmp_path, _values(tiny_tokenizer_dir, checkpointing_steps=0))
    (tmp_path / "out/all_results.json").unlink()  # as in the issue: the old results removed by hand
    with pytest.raises(RunConfigError, match="holding a run \\(model.safetensors\\); pass --overwrite_output_dir"):
        _train(tmp_path, _values(tiny_tokenizer_dir), resume_from_checkpoint="latest")


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints carry their run's identity


def _write_floats_into(weights: Path, byte_count: int = 16384) -> None:
    """Overwrites `byte_count` bytes of a safetensors file's tensor data with valid float32 values: the file still
    loads, as another model."""
    header_bytes = int.from_bytes(weights.read_bytes()[:8], "little")
    with open(weights, "r+b") as handle:
        handle.seek(8 + header_bytes)
        handle.write(torch.randn(byte_count // 4).numpy().tobytes())


def test_changed_checkpoint_files_are_refused_naming_the_older_checkpoint(tiny_tokenizer_dir, tmp_path):
    values = _values(tiny_tokenizer_dir, checkpointing_steps=2)
    _train(tmp_path, values, stop_after_steps=4)
    older, newer = list_checkpoints(tmp_path / "out")
    _write_floats_into(newer / "model.safetensors")
    with pytest.raises(CheckpointError) as refused:
        _train(tmp_path, values, resume_from_checkpoint="latest")
    assert str(refused.value) == (
        f"checkpoint {newer} is damaged: model.safetensors differs from the file saved (sha256); the older "
        f"checkpoint {older} is complete: resume from it with --resume_from_checkpoint {older}")
    # a file the checkpoint was not saved with: accelerate would unpickle a custom_checkpoint_0.pkl
    torch.save({"x": 1}, older / "custom_checkpoint_0.pkl")
    with pytest.raises(CheckpointError, match="custom_checkpoint_0.pkl was not saved with it .*; no older checkpoint "
                                              "exists: train afresh with --overwrite_output_dir$"):
        _train(tmp_path, values, resume_from_checkpoint=str(older))
    (older / "custom_checkpoint_0.pkl").unlink()
    assert _train(tmp_path, values, resume_from_checkpoint=str(older)).completed_steps == 6


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_in_a_checkpoint_without_checksums_is_refused_in_one_line(tiny_tokenizer_dir, tmp_path):
    """A checkpoint of an older version (no `files_sha256`): torch's own refusal, cut to its first line."""
    values = _values(tiny_tokenizer_dir)
    _train(tmp_path, values, stop_after_steps=3)
    (checkpoint,) = list_checkpoints(tmp_path / "out")
    state = json.loads((checkpoint / TRAINER_STATE).read_text())
    del state["files_sha256"]
    (checkpoint / TRAINER_STATE).write_text(json.dumps(state))
    marker = tmp_path / "code_ran"
    torch.save(_RunsCodeWhenUnpickled(marker), checkpoint / "optimizer.bin")
    with pytest.raises(CheckpointError, match=f"checkpoint {checkpoint} is damaged: UnpicklingError") as refused:
        _train(tmp_path, values, resume_from_checkpoint="latest")
    assert "\n" not in str(refused.value) and not marker.exists()


def test_prediction_resume_refuses_an_input_whose_content_changed(tiny_model_dir, tmp_path, capsys):
    path, out = _text_input(tmp_path), tmp_path / "out.jsonl"
    argv = ["--model", str(tiny_model_dir), "--input", str(path), "--output", str(out), "--chunk_size", "1"]
    assert _predict([*argv, "--stop_after_chunks", "1"], capsys)[0] == 0
    before = path.stat()
    path.write_text(path.read_text().replace("rats", "mice"), encoding="utf-8")  # same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # same time
    code, err = _predict([*argv, "--resume"], capsys)
    assert code == 2 and len(err) == 1 and "got input_sha256: '" in err[0]


# ---------------------------------------------------------------------------------------------------------------------
# Output paths: folders refused, streams written in place, - for standard input and output


def test_an_output_that_is_a_folder_is_refused_before_tagging(tiny_model_dir, tmp_path, capsys):
    path, folder = _text_input(tmp_path), tmp_path / "folder"
    folder.mkdir()
    code, err = _predict(["--model", str(tiny_model_dir), "--input", str(path), "--output", str(folder)], capsys)
    assert code == 2 and err == [f"error: --output: expected a file (the input is a file), got the folder {folder}"]
    assert not list(folder.iterdir()) and sorted(item.name for item in tmp_path.iterdir()) == ["folder", "in.txt"]


def test_streams_are_recognised_without_writing_to_them(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert is_stream("-") and is_stream(fifo) and is_stream("/dev/null")
    assert is_stream("/dev/stdout") and is_stream("/proc/self/fd/1")  # even where fd 1 is a regular file
    (tmp_path / "file.jsonl").write_text("")
    assert not is_stream(tmp_path / "file.jsonl") and not is_stream(tmp_path / "new.jsonl")


def test_a_fifo_output_receives_the_predictions_in_place(tiny_model_dir, tmp_path, capsys):
    path = _text_input(tmp_path)
    argv = ["--model", str(tiny_model_dir), "--input", str(path), "--output"]
    assert _predict([*argv, str(tmp_path / "file.jsonl")], capsys)[0] == 0
    fifo, received = tmp_path / "fifo", []
    os.mkfifo(fifo)
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    code, err = _predict([*argv, str(fifo)], capsys)
    reader.join(timeout=60)
    assert code == 0, err
    assert received == [(tmp_path / "file.jsonl").read_bytes()]
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # written to, never replaced
    assert sorted(item.name for item in tmp_path.iterdir()) == ["fifo", "file.jsonl", "in.txt"]


def test_dash_reads_standard_input_and_writes_standard_output(tiny_model_dir, tmp_path, capsys, monkeypatch):
    named = _text_input(tmp_path, "stdin")  # the name text documents get from standard input
    argv = ["--model", str(tiny_model_dir), "--format", "text", "--input"]
    assert _predict([*argv, str(named), "--output", str(tmp_path / "out.jsonl")], capsys)[0] == 0
    piped = subprocess.run([sys.executable, str(REPO / "predict.py"), *argv, "-", "--output", "-"],
                           input=named.read_bytes(), env=_env(tmp_path), capture_output=True, timeout=300, cwd=tmp_path)
    assert piped.returncode == 0, piped.stderr[-2000:]
    assert piped.stdout == (tmp_path / "out.jsonl").read_bytes()  # the predictions, and nothing else
    assert b"Tagged 3 text unit(s)" in piped.stderr
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"Aspirin.\n")))
    code, err = _predict([*argv[:-3], "--input", "-", "--output", "-"], capsys)
    assert code == 2 and err == ["error: --input -: expected --format (conll|text|pubtator|bioc-xml|bioc-json) with "
                                 "standard input, got none, and the input does not start like a BioC collection"]


# ---------------------------------------------------------------------------------------------------------------------
# Model folders that do not load


def test_a_model_that_fails_to_load_leaves_no_partial_output(tiny_model_dir, tmp_path, capsys):
    model, path, out = tmp_path / "model", _text_input(tmp_path), tmp_path / "out.jsonl"
    shutil.copytree(tiny_model_dir, model)
    (model / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    code, err = _predict(["--model", str(model), "--input", str(path), "--output", str(out)], capsys)
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"error: {model}: expected a model folder with readable safetensors weights, got ")
    assert sorted(item.name for item in tmp_path.iterdir()) == ["in.txt", "model"]


def test_a_model_folder_with_pickled_weights_only_is_refused(tiny_model_dir, tmp_path, capsys):
    from safetensors.torch import load_file

    model, path = tmp_path / "model", _text_input(tmp_path)
    shutil.copytree(tiny_model_dir, model)
    torch.save(load_file(model / "model.safetensors"), model / "pytorch_model.bin")
    (model / "model.safetensors").unlink()
    code, err = _predict(["--model", str(model), "--input", str(path), "--output", str(tmp_path / "o.jsonl")],
                         capsys)
    assert code == 2 and err == [
        f"error: --model {model}: expected safetensors weights (model.safetensors), got ['pytorch_model.bin'] only, "
        f"which would be unpickled; re-save the model with save_pretrained(safe_serialization=True) where you trust "
        f"the file"]


def test_an_encoder_folder_without_a_model_is_one_line(tiny_tokenizer_dir, tmp_path):
    values = _values(tiny_tokenizer_dir)
    values["model"].pop("encoder_config")
    values["model"]["encoder"] = str(tiny_tokenizer_dir)  # a folder with a tokenizer and no model
    with pytest.raises(RunConfigError, match=f"test.yaml: model.encoder: expected a pretrained encoder .*, got "
                                             f"'{tiny_tokenizer_dir}': ") as refused:
        _train(tmp_path, values)
    assert "\n" not in str(refused.value)


# ---------------------------------------------------------------------------------------------------------------------
# Data a head cannot learn from


def _corpus(folder: Path, splits: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in splits.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


TRAIN = "Aspirin\tB-Chemical\nworks\tO\n\nIt\tO\nhelps\tO\n\n"


def _one_task(tokenizer_dir: Path, data_dir: Path, **task) -> dict:
    values = _values(tokenizer_dir)
    values["tasks"] = [{"name": "chem", "family": "chemical", "data_dir": str(data_dir), **task}]
    return values


def test_a_label_only_evaluation_splits_hold_is_refused_naming_file_line_and_label(tiny_tokenizer_dir, tmp_path,
                                                                                   caplog):
    data = _corpus(tmp_path / "corpus", {"train.tsv": TRAIN, "devel.tsv": "Aspirin\tB-Chemical\n\n",
                                         "test.tsv": "x\tO\n\nHepatitis\tB-Disease\nB\tI-Disease\n\n"})
    with pytest.raises(CorpusFormatError) as refused:
        _train(tmp_path, _one_task(tiny_tokenizer_dir, data))
    assert str(refused.value) == (
        f"{data / 'test.tsv'}:3: expected labels of entity types the training split of task 'chem' holds "
        f"['Chemical'], got 'B-Disease', which the head could never learn (set allow_labels_only_in_evaluation: true "
        f"on the task to train anyway)")
    outcome = _train(tmp_path, _one_task(tiny_tokenizer_dir, data, allow_labels_only_in_evaluation=True), "allowed")
    assert outcome.completed_steps == 6
    warnings = [record.getMessage() for record in caplog.records if "allow_labels_only_in_evaluation" in record.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith(f"{data / 'test.tsv'}:3: ")


def test_a_training_split_without_entities_is_refused(tiny_tokenizer_dir, tmp_path):
    data = _corpus(tmp_path / "corpus", {"train.tsv": "It\tO\nhelps\tO\n\n", "test.tsv": "x\tO\n\n"})
    with pytest.raises(CorpusFormatError, match=f"^{data / 'train.tsv'}: expected entities in the training split of "
                                                f"task 'chem', got none in its 1 sentence\\(s\\)$"):
        _train(tmp_path, _one_task(tiny_tokenizer_dir, data))


def test_a_label_outside_the_configs_labels_names_its_file_and_line(tiny_tokenizer_dir, tmp_path):
    data = _corpus(tmp_path / "corpus", {"train.tsv": TRAIN + "Tumour\tB-Disease\n\n"})
    with pytest.raises(CorpusFormatError, match=f"^{data / 'train.tsv'}:7: expected one of the labels of task 'chem' "
                                                f"\\['O', 'B-Chemical', 'I-Chemical'\\], got 'B-Disease'$"):
        _train(tmp_path, _one_task(tiny_tokenizer_dir, data, labels=["O", "B-Chemical", "I-Chemical"]))


def test_both_dev_and_devel_is_one_line(tiny_tokenizer_dir, tmp_path):
    data = _corpus(tmp_path / "corpus", {"train.tsv": TRAIN, "devel.tsv": TRAIN, "dev.tsv": TRAIN})
    with pytest.raises(CorpusFormatError, match=f"^{data}: expected one file for the validation split, got "
                                                f"\\['devel.tsv', 'dev.tsv'\\] \\(keep one of them\\)$"):
        _train(tmp_path, _one_task(tiny_tokenizer_dir, data))


@pytest.mark.parametrize("flag, value, message", [
    ("logging_steps", 0, "training.logging_steps: expected a positive number, got 0"),
    ("eval_steps", -1, "training.eval_steps: expected a number of steps, or 0 for none, got -1"),
])
def test_intervals_that_cannot_work_are_refused_in_the_config(tiny_tokenizer_dir, tmp_path, flag, value, message):
    with pytest.raises(RunConfigError, match=f"^test.yaml: {message}$"):
        _train(tmp_path, _values(tiny_tokenizer_dir, **{flag: value}))


# ---------------------------------------------------------------------------------------------------------------------
# A full disk


@pytest.fixture
def small_disk(tmp_path, request):
    """A small tmpfs (`size` from the test's parameter, 2m by default), mounted where the machine allows it (root
    in a container that may mount), else the test is skipped."""
    folder = tmp_path / "small_disk"
    folder.mkdir()
    size = getattr(request, "param", "2m")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_while_training_is_one_line_naming_the_folder_and_the_space_used(tiny_tokenizer_dir, small_disk):
    values = _values(tiny_tokenizer_dir, max_steps=40, checkpointing_steps=1, keep_checkpoints=0)
    with pytest.raises(DiskFullError) as full:
        _train(small_disk, values)
    message = str(full.value)
    assert "\n" not in message and "no space left on device; the run had written " in message
    assert f"to {small_disk / 'out'} so far" in message
    assert message.endswith("resume with --resume_from_checkpoint latest")


@pytest.mark.parametrize("small_disk", ["128k"], indirect=True)
def test_a_full_disk_while_predicting_is_one_line_naming_the_partial_output(tiny_model_dir, tmp_path, small_disk,
                                                                            capsys):
    path = tmp_path / "in.txt"
    path.write_text("Aspirin induced ulcers in rats and mice. " * 100 + "\n\n" * 2 + "Hepatitis. " * 2000,
                    encoding="utf-8")
    out = small_disk / "out.jsonl"
    argv = ["--model", str(tiny_model_dir), "--input", str(path), "--output", str(out), "--chunk_size", "50"]
    code, err = _predict(argv, capsys)
    errors = [line for line in err if line.startswith("error:")]  # the rest is the progress bar
    assert code == 2 and len(errors) == 1 and "Traceback" not in "\n".join(err), err
    assert errors[0].startswith(f"error: {out}.partial: no space left on device; the run had written ")
    assert errors[0].endswith("so far; free at least that much, then run again with --resume")
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------------------------
# Killed runs resume to the output of an uninterrupted one (the lock of the killed run does not stand in the way)

# predict.py killed with SIGKILL in the middle of writing its third chunk.
KILL_WHILE_PREDICTING = """
import os, signal, sys
from hstl.inference import streaming
original, calls = streaming.ResumableOutput.append, []

def append_then_die(self, text, units):
    calls.append(units)
    if len(calls) == 4:  # the header, two chunks, then half of the third
        handle = self._open()
        handle.write(text.encode("utf-8")[: len(text) // 2])
        handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, text, units)

streaming.ResumableOutput.append = append_then_die
sys.path.insert(0, sys.argv[1])
import predict
sys.exit(predict.main(sys.argv[2:]))
"""


def test_prediction_killed_mid_chunk_resumes_to_the_uninterrupted_output(tiny_model_dir, tmp_path, capsys):
    path = _text_input(tmp_path)
    path.write_text(path.read_text() * 4, encoding="utf-8")
    argv = ["--model", str(tiny_model_dir), "--input", str(path), "--chunk_size", "2", "--output"]
    assert _predict([*argv, str(tmp_path / "straight.jsonl")], capsys)[0] == 0
    out = tmp_path / "out.jsonl"
    killed = subprocess.run([sys.executable, "-c", KILL_WHILE_PREDICTING, str(REPO), *argv, str(out)],
                            env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (tmp_path / "out.jsonl.lock").is_file() and not out.exists()  # left by the killed run, not held
    code, err = _predict([*argv, str(out), "--resume"], capsys)
    assert code == 0, err
    assert out.read_bytes() == (tmp_path / "straight.jsonl").read_bytes()
    assert sorted(item.name for item in tmp_path.iterdir()) == ["in.txt", "out.jsonl", "straight.jsonl"]


# train.py killed with SIGKILL while it writes the final model folder (three files moved into place).
KILL_WHILE_WRITING_THE_MODEL = """
import os, signal, sys
from pathlib import Path
import hstl.training as training
original = training.save_model_folder

def save_then_die(accelerator, model, tokenizer, folder):
    if Path(folder).name != "best_model":
        real_replace, moved = os.replace, []

        def replace_then_die(source, target):
            real_replace(source, target)
            moved.append(target)
            if len(moved) == 3:
                os.kill(os.getpid(), signal.SIGKILL)

        os.replace = replace_then_die
    return original(accelerator, model, tokenizer, folder)

training.save_model_folder = save_then_die
sys.path.insert(0, sys.argv[1])
import train
sys.exit(train.main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_training_killed_while_writing_the_final_model_resumes_bit_exact(tiny_tokenizer_dir, tmp_path):
    import yaml
    from safetensors.torch import load_file

    values = _values(tiny_tokenizer_dir)
    values["data_root"] = str(tmp_path)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(values))
    args = ["--config", str(config), "--cpu", "--output_dir"]
    straight = subprocess.run([sys.executable, str(REPO / "train.py"), *args, str(tmp_path / "a")],
                              env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = subprocess.run([sys.executable, "-c", KILL_WHILE_WRITING_THE_MODEL, str(REPO), *args, str(tmp_path / "b")],
                            env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (tmp_path / "b/all_results.json").exists() and not (tmp_path / "b/model.safetensors").exists()
    again = subprocess.run([sys.executable, str(REPO / "train.py"), *args, str(tmp_path / "b")],
                           env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "holding a run (checkpoints)" in again.stderr  # not started over by mistake
    resumed = subprocess.run([sys.executable, str(REPO / "train.py"), *args, str(tmp_path / "b"),
                              "--resume_from_checkpoint", "latest"], env=_env(tmp_path), capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected, got = load_file(tmp_path / "a/model.safetensors"), load_file(tmp_path / "b/model.safetensors")
    assert expected.keys() == got.keys() and all(torch.equal(expected[key], got[key]) for key in expected)
    results = [json.loads((tmp_path / name / "all_results.json").read_text()) for name in ("a", "b")]
    for result in results:
        result.pop("wall_seconds")
    assert results[0] == results[1]


def test_nul_bytes_in_text_input_separate_words_and_keep_offsets(tmp_path):
    from hstl.formats.text import iter_text_sentences

    path = tmp_path / "in.txt"
    text = "Patients with\x00hepatitis\x00\x00B were seen.\x00\n"
    path.write_text(text, encoding="utf-8")
    (sentence,) = iter_text_sentences(path)
    assert sentence.words == ["Patients", "with", "hepatitis", "B", "were", "seen", "."]
    assert all(text[start:end] == word for word, start, end in sentence.tokens)
    assert (sentence.start, sentence.end) == (0, text.index(".") + 1)


def test_a_checkpoint_of_the_older_version_is_checked_on_the_settings_it_recorded(tiny_tokenizer_dir, tmp_path):
    """Checkpoints written before the fingerprint recorded `settings` (seed, batch size, accumulation, model source,
    corpora): those are compared under the same keys; what they did not record is not."""
    from hstl.training import check_run_fingerprint

    run_config = run_config_from_dict(_values(tiny_tokenizer_dir), source="test.yaml", base_dir=tmp_path)
    model = run_config.model
    settings = {"seed": 7, "train_batch_size": 4, "gradient_accumulation_steps": 1, "model.encoder": None,
                "model.encoder_config": model.encoder_config, "model.tokenizer": model.tokenizer,
                "model.init_from": None, "model.init_from_revision": None,
                "tasks": [{"name": task.name, "data_dir": task.data_dir, "max_train_sentences": 40}
                          for task in run_config.tasks]}
    check_run_fingerprint({"settings": settings}, run_config, tmp_path / "step_3")  # the same run: no error
    with pytest.raises(CheckpointError, match=r"got tasks\[1\]\.max_train_sentences: 30 in the checkpoint, 40 now; "
                                              r"training\.seed: 8 in the checkpoint, 7 now; restore"):
        settings["seed"], settings["tasks"][1]["max_train_sentences"] = 8, 30
        check_run_fingerprint({"settings": settings}, run_config, tmp_path / "step_3")


def test_an_offline_hub_id_as_encoder_is_one_line_with_exit_status_2(tiny_tokenizer_dir, tmp_path):
    import yaml

    values = _values(tiny_tokenizer_dir)
    values["model"].pop("encoder_config")
    values["model"]["encoder"] = "nobody/no-such-encoder"
    values["data_root"] = str(tmp_path)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(values))
    done = subprocess.run([sys.executable, str(REPO / "train.py"), "--config", str(config), "--cpu", "--output_dir",
                           str(tmp_path / "out")], env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(errors) == 1 and errors[0].startswith(
        f"error: {config}: model.encoder: expected a pretrained encoder (a folder holding config.json and safetensors "
        f"weights, or a Hub id in the Hugging Face cache), got 'nobody/no-such-encoder': ")
