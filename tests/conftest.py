"""Shared pytest fixtures.

The real corpora live outside the repository, in `../shared/data/bioner` (one folder per corpus holding
`{train,devel,test}.tsv`); the environment variable `HSTL_BIONER_DIR` points elsewhere. Tests that read them take the
`bioner_dir` fixture, carry `@pytest.mark.corpora` and are skipped when the folder is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def find_bioner_dir() -> Path | None:
    """The real-corpora folder, or None when it does not exist here."""
    configured = os.environ.get("HSTL_BIONER_DIR")
    candidate = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data" / "bioner"
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def bioner_dir() -> Path:
    """Folder holding `<corpus>/{train,devel,test}.tsv`; skips the test when it is absent."""
    found = find_bioner_dir()
    if found is None:
        pytest.skip("real corpora not found: set HSTL_BIONER_DIR or provide ../shared/data/bioner")
    return found


def tiny_run_config(**training) -> dict:
    """A run config of seconds: two shipped sample corpora capped at 40 sentences, a 2-layer 32-wide XLNet, no dropout
    (so that runs can be compared exactly), 6 steps. Keyword arguments override the training section."""
    return {
        "model": {
            "encoder_config": {"model_type": "xlnet", "d_model": 32, "n_layer": 2, "n_head": 2, "d_inner": 64,
                               "dropout": 0.0},
            "tokenizer": "train",
            "tokenizer_vocab_size": 600,
            "hidden_dropout": 0.0,
        },
        "tasks": [
            {"name": "chem", "family": "chemical", "data_dir": "sample:BC5CDR-chem", "max_train_sentences": 40},
            {"name": "disease", "family": "disease", "data_dir": "sample:NCBI-disease", "max_train_sentences": 40},
        ],
        "training": {
            "seed": 7, "train_batch_size": 4, "eval_batch_size": 32, "max_steps": 6, "eval_steps": 0,
            "checkpointing_steps": 3, "keep_checkpoints": 3, "logging_steps": 1, "max_length": 48,
            "window_overlap": 8, "encoder_learning_rate": 1e-3, "head_learning_rate": 1e-2, "batch_mode": "mixed",
            **training,
        },
    }


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    """The tokenizer of `tiny_run_config`, trained once per session, so that every tiny run uses identical ids."""
    from hstl.run_config import run_config_from_dict
    from hstl.tokenization import train_xlnet_tokenizer
    from hstl.corpora import load_task_data

    folder = tmp_path_factory.mktemp("tiny_tokenizer")
    run_config = run_config_from_dict(tiny_run_config(), source="tiny.yaml", base_dir=folder)
    sentences = [sentence.tokens for task in load_task_data(run_config) for sentence in task.splits["train"]]
    train_xlnet_tokenizer(sentences, folder / "tokenizer", vocab_size=600, seed=7)
    return folder / "tokenizer"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """A stage-1 model folder (2 heads: chem, disease) from a 6-step tiny run, with tokenizer and remote code."""
    from hstl.run_config import run_config_from_dict
    from hstl.training import LoopArguments, run_training

    folder = tmp_path_factory.mktemp("tiny_model")
    values = tiny_run_config(checkpointing_steps=0)
    values["model"]["tokenizer"] = str(tiny_tokenizer_dir)
    run_config = run_config_from_dict(values, source="tiny.yaml", base_dir=folder)
    run_training(run_config, LoopArguments(output_dir=str(folder / "model"), cpu=True))
    return folder / "model"


def sample_sentences(split: str) -> list[list[str]]:
    """Word lists of one split of every corpus sample shipped with the package."""
    from hstl.data import read_split_dir, sample_data_dir

    sentences = []
    for corpus_dir in sorted(path for path in sample_data_dir().iterdir() if path.is_dir()):
        sentences.extend(sentence.tokens for sentence in read_split_dir(corpus_dir)[split])
    return sentences
