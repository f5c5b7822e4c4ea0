"""Faults: a training process SIGKILLed in the middle of writing a checkpoint, then resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import torch
import yaml
from safetensors.torch import load_file

from conftest import tiny_run_config
from hstl.checkpointing import list_checkpoints


REPO = Path(__file__).resolve().parents[1]

# Runs train.py's main in a child process whose second `save_state` writes the model weights into the staging folder
# and is then killed with SIGKILL: no Python cleanup, exactly like `kill -9` or an out-of-memory kill mid-save.
KILL_DURING_SECOND_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    import accelerate
    sys.path.insert(0, sys.argv[1])
    original = accelerate.Accelerator.save_state
    calls = []

    def save_state_then_die(self, output_dir=None, **kwargs):
        calls.append(output_dir)
        result = original(self, output_dir, **kwargs)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    accelerate.Accelerator.save_state = save_state_then_die
    import train
    sys.exit(train.main(sys.argv[2:]))
    """
)


def _env(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("ACCELERATE_")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return env


@pytest.mark.slow
def test_sigkill_during_checkpoint_save_then_resume(tmp_path, tiny_tokenizer_dir):
    values = tiny_run_config(max_steps=6, checkpointing_steps=2)
    values["model"]["tokenizer"] = str(tiny_tokenizer_dir)
    values["data_root"] = str(tmp_path)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(values))
    args = ["--config", str(config), "--cpu"]

    straight = subprocess.run([sys.executable, str(REPO / "train.py"), *args, "--output_dir", str(tmp_path / "a")],
                              env=_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-2000:]

    killed = subprocess.run([sys.executable, "-c", KILL_DURING_SECOND_SAVE, str(REPO), *args, "--output_dir",
                             str(tmp_path / "b")], env=_env(tmp_path), cwd=tmp_path, capture_output=True, text=True,
                            timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    checkpoints = tmp_path / "b" / "checkpoints"
    # the interrupted save left its staging folder; the previous checkpoint is complete and is the latest
    assert (checkpoints / "step_00000004.incomplete").is_dir()
    assert [path.name for path in list_checkpoints(tmp_path / "b")] == ["step_00000002"]
    assert not (tmp_path / "b" / "model.safetensors").exists()

    resumed = subprocess.run([sys.executable, str(REPO / "train.py"), *args, "--output_dir", str(tmp_path / "b"),
                              "--resume_from_checkpoint", "latest"], env=_env(tmp_path), cwd=tmp_path,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "step_00000002" in resumed.stdout + resumed.stderr
    expected = load_file(tmp_path / "a" / "model.safetensors")
    got = load_file(tmp_path / "b" / "model.safetensors")
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[key], got[key]) for key in expected)
    assert not (checkpoints / "step_00000004.incomplete").exists()  # the next save replaced the leftover


# Bytes that stress the reader: separators, line ends of every kind, BOMs, NUL and control characters, zero-width and
# non-characters, invalid UTF-8, huge tokens.
_ODD_PIECES = [b"\t", b" ", b"\n", b"\r\n", b"\r", b"\xef\xbb\xbf", b"\x00", b"\x07", "\u200b".encode(),
               "\u2028".encode(), "\ufffe".encode(), b"\xff", b"\xc3", b"-DOCSTART-", b"O", b"B-X", b"I-X", b"B-",
               b"x" * 5000, "é".encode(), "𝔸".encode()]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.one_of(st.sampled_from(_ODD_PIECES), st.binary(max_size=8)), max_size=40),
       labelled=st.booleans())
def test_fuzz_reader_gives_sentences_or_a_located_error(tmp_path, pieces, labelled):
    from hstl.data import CorpusFormatError, read_conll

    path = tmp_path / "fuzz.tsv"
    path.write_bytes(b"".join(pieces))
    try:
        sentences = read_conll(path, labelled=labelled)
    except CorpusFormatError as error:
        assert str(error).startswith(f"{path}:") and error.line is not None and error.line >= 1
        return
    assert sentences
    for sentence in sentences:
        # A token is never empty or ASCII spaces and TABs alone (other whitespace is a token).
        assert sentence.tokens and all(token.strip(" \t") for token in sentence.tokens)
        if labelled:
            assert len(sentence.labels) == len(sentence.tokens)
