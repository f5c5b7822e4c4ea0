"""Stage 2 (finetune.py): freezing, known and new targets, the command-line interface."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import finetune
from hstl import HSTLModel
from hstl.data import sample_data_dir


REPO = Path(__file__).resolve().parents[1]


def _finetune(argv):
    assert finetune.main(argv) == 0


def _sample_files(corpus):
    folder = sample_data_dir() / corpus
    return ["--train_file", str(folder / "train.tsv"), "--validation_file", str(folder / "devel.tsv"),
            "--test_file", str(folder / "test.tsv")]


def _common(out, steps=3):
    return ["--output_dir", str(out), "--max_steps", str(steps), "--eval_steps", "0", "--checkpointing_steps", "0",
            "--cpu", "--train_batch_size", "4"]


def test_frozen_encoder_stays_and_head_changes(tmp_path, tiny_model_dir):
    _finetune(["--model", str(tiny_model_dir), "--task", "disease", *_sample_files("NCBI-disease"),
               "--freeze", "encoder", "--head_learning_rate", "0.01", *_common(tmp_path / "out")])
    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(tmp_path / "out/model.safetensors")
    encoder_keys = [key for key in before if key.startswith("encoder.")]
    assert encoder_keys and all(torch.equal(before[key], after[key]) for key in encoder_keys)
    changed = [key for key in after if not key.startswith("encoder.") and not torch.equal(before[key], after[key])]
    assert "heads.disease.emission.weight" in changed and "family_layers.disease.dense.weight" in changed
    # only the target's family layer and head remain
    assert not any(key.startswith(("heads.chem.", "family_layers.chemical.")) for key in after)


def test_unfrozen_finetuning_changes_the_encoder(tmp_path, tiny_model_dir):
    _finetune(["--model", str(tiny_model_dir), "--task", "chem", *_sample_files("BC5CDR-chem"),
               "--encoder_learning_rate", "0.001", *_common(tmp_path / "out")])
    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(tmp_path / "out/model.safetensors")
    assert any(not torch.equal(before[key], after[key]) for key in after if key.startswith("encoder."))


def test_new_corpus_gets_a_working_head(tmp_path, tiny_model_dir):
    _finetune(["--model", str(tiny_model_dir), "--task", "species-new", "--family", "species",
               *_sample_files("linnaeus"), *_common(tmp_path / "out", steps=4)])
    model = HSTLModel.from_pretrained(tmp_path / "out").eval()
    assert model.config.task_names == ["species-new"]
    assert model.config.tasks[0]["labels"] == ["O", "B-Species", "I-Species"]
    assert model.config.families == ["species"]
    results = json.loads((tmp_path / "out/all_results.json").read_text())
    assert set(results["test"]) == {"species-new", "mean_f1"}
    run_config = (tmp_path / "out/run_config.yaml").read_text()
    assert str(tiny_model_dir.resolve()) in run_config  # where it came from


def test_new_task_without_family_is_refused(tmp_path, tiny_model_dir, capsys):
    from hstl.cli import run_cli

    code = run_cli(lambda: finetune.main(["--model", str(tiny_model_dir), "--task", "species-new",
                                          *_sample_files("linnaeus"), *_common(tmp_path / "out")]))
    assert code == 2
    assert "--family: task 'species-new' is new to" in capsys.readouterr().err


def test_known_task_with_other_family_is_refused(tmp_path, tiny_model_dir, capsys):
    from hstl.cli import run_cli

    code = run_cli(lambda: finetune.main(["--model", str(tiny_model_dir), "--task", "chem", "--family", "disease",
                                          *_sample_files("BC5CDR-chem"), *_common(tmp_path / "out")]))
    assert code == 2
    assert "belongs to family 'chemical'" in capsys.readouterr().err


def test_label_mismatch_with_known_head_is_refused(tmp_path, tiny_model_dir, capsys):
    from hstl.cli import run_cli

    # linnaeus has Species labels; the 'chem' head knows only Chemical
    code = run_cli(lambda: finetune.main(["--model", str(tiny_model_dir), "--task", "chem",
                                          *_sample_files("linnaeus"), *_common(tmp_path / "out")]))
    assert code == 2
    assert "does not know" in capsys.readouterr().err


def test_finetune_script_interface(tmp_path, tiny_model_dir):
    env = {key: value for key, value in os.environ.items() if not key.startswith("ACCELERATE_")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    folder = sample_data_dir() / "NCBI-disease"
    completed = subprocess.run(
        [sys.executable, str(REPO / "finetune.py"), "--model", str(tiny_model_dir), "--train_file",
         str(folder / "train.tsv"), "--validation_file", str(folder / "devel.tsv"), "--task", "ncbi",
         "--family", "disease", "--output_dir", str(tmp_path / "out"), "--max_steps", "2", "--eval_steps", "2",
         "--train_batch_size", "4"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "ncbi" in completed.stdout and "Model folder:" in completed.stdout
    config = json.loads((tmp_path / "out/config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_hstl.HSTLModel"
    assert (tmp_path / "out/modeling_hstl.py").exists() and (tmp_path / "out/model.safetensors").exists()
