"""Stage-1 training: tiny runs on the shipped sample (seconds each), resume exactness, two real processes, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
import torch
from safetensors.torch import load_file

from hstl.checkpointing import CheckpointError, list_checkpoints
from hstl.run_config import RunConfigError, load_run_config, run_config_from_dict
from conftest import tiny_run_config
from hstl.training import LoopArguments, NonFiniteError, build_optimizer, build_model, load_task_data, run_training


REPO = Path(__file__).resolve().parents[1]


def _run(tmp_path, values, name, **loop):
    run_config = run_config_from_dict(values, source="test.yaml", base_dir=tmp_path)
    return run_training(run_config, LoopArguments(output_dir=str(tmp_path / name), cpu=True, **loop))


@pytest.fixture
def tokenizer_dir(tiny_tokenizer_dir):
    return tiny_tokenizer_dir


def _with_tokenizer(values, tokenizer_dir):
    values["model"]["tokenizer"] = str(tokenizer_dir)
    return values


def test_run_leaves_a_model_folder_with_results(tmp_path, tokenizer_dir):
    values = _with_tokenizer(tiny_run_config(eval_steps=3), tokenizer_dir)
    outcome = _run(tmp_path, values, "out")
    out = tmp_path / "out"
    for name in ("config.json", "model.safetensors", "modeling_hstl.py", "configuration_hstl.py",
                 "tokenizer_config.json", "run_config.yaml", "all_results.json", "train_log.jsonl"):
        assert (out / name).exists(), name
    results = json.loads((out / "all_results.json").read_text())
    assert set(results["validation"]) == {"chem", "disease", "mean_f1"} and set(results["test"]) == {"chem", "disease", "mean_f1"}
    assert results["completed_steps"] == 6 and outcome.completed_steps == 6
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    train_lines = [record for record in log if "train_loss" in record]
    assert [record["step"] for record in train_lines] == [1, 2, 3, 4, 5, 6]
    assert all(record["train_loss"] > 0 for record in train_lines)
    # Each evaluation (eval_steps 3) leaves its scores on disk: the validation curve that shows convergence.
    evaluations = [record for record in log if "validation_f1/mean" in record]
    assert [record["step"] for record in evaluations] == [3, 6]
    for record in evaluations:
        assert set(record) == {"step", "validation_f1/chem", "validation_f1/disease", "validation_f1/mean"}
        assert record["validation_f1/mean"] == pytest.approx(
            (record["validation_f1/chem"] + record["validation_f1/disease"]) / 2)
    saved = load_run_config(out / "run_config.yaml")
    assert saved.task_names() == ["chem", "disease"] and saved.training.max_steps == 6
    assert not (out / "best_model").exists()
    assert [path.name for path in list_checkpoints(out)] == ["step_00000003", "step_00000006"]


def test_training_reduces_the_loss(tmp_path, tokenizer_dir):
    values = _with_tokenizer(tiny_run_config(max_steps=30, checkpointing_steps=0, batch_mode="homogeneous"),
                             tokenizer_dir)
    _run(tmp_path, values, "out")
    log = [json.loads(line)["train_loss"] for line in (tmp_path / "out/train_log.jsonl").read_text().splitlines()
           if "train_loss" in line]
    assert sum(log[-5:]) / 5 < 0.6 * sum(log[:5]) / 5


def test_resume_after_interruption_gives_identical_weights(tmp_path, tokenizer_dir):
    values = _with_tokenizer(tiny_run_config(), tokenizer_dir)
    _run(tmp_path, values, "straight")
    # "Killed" after step 4: the step-3 checkpoint exists, step 4 is lost and redone after resuming.
    _run(tmp_path, values, "resumed", stop_after_steps=4)
    assert [p.name for p in list_checkpoints(tmp_path / "resumed")] == ["step_00000003"]
    _run(tmp_path, values, "resumed", resume_from_checkpoint="latest")
    straight = load_file(tmp_path / "straight/model.safetensors")
    resumed = load_file(tmp_path / "resumed/model.safetensors")
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    log = [json.loads(line)["step"] for line in (tmp_path / "resumed/train_log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4, 5, 6]


def test_a_fresh_start_in_a_used_folder_logs_only_its_own_steps(tmp_path, tokenizer_dir):
    """Killed after step 2, before its first checkpoint (step 3), then started again without a checkpoint to resume:
    the log holds steps 1-6 once, not the first start's 1-2 as well."""
    values = _with_tokenizer(tiny_run_config(eval_steps=3), tokenizer_dir)
    _run(tmp_path, values, "out", stop_after_steps=2)
    assert not list_checkpoints(tmp_path / "out")
    _run(tmp_path, values, "out")
    log = [json.loads(line) for line in (tmp_path / "out/train_log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in log if "train_loss" in record] == [1, 2, 3, 4, 5, 6]
    assert [record["step"] for record in log if "validation_f1/mean" in record] == [3, 6]


def test_wall_seconds_add_up_over_resumed_invocations(tmp_path, tokenizer_dir):
    """A resumed run reports the seconds of the invocations before it (as its checkpoint recorded them) plus its own."""
    values = _with_tokenizer(tiny_run_config(), tokenizer_dir)
    _run(tmp_path, values, "out", stop_after_steps=4)
    state_file = list_checkpoints(tmp_path / "out")[-1] / "trainer_state.json"
    state = json.loads(state_file.read_text())
    assert 0 < state["wall_seconds"] < 600
    state["wall_seconds"] = 5000.0  # as if the killed invocation had run for 5,000 s before its checkpoint
    state_file.write_text(json.dumps(state))
    outcome = _run(tmp_path, values, "out", resume_from_checkpoint="latest")
    assert 5000.0 < outcome.results["wall_seconds"] < 5600.0
    assert json.loads((tmp_path / "out/all_results.json").read_text())["wall_seconds"] == outcome.results["wall_seconds"]


def test_damaged_checkpoint_is_reported_with_its_path(tmp_path, tokenizer_dir):
    values = _with_tokenizer(tiny_run_config(), tokenizer_dir)
    _run(tmp_path, values, "out", stop_after_steps=3)
    checkpoint = list_checkpoints(tmp_path / "out")[-1]
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=f"checkpoint {checkpoint} is damaged"):
        _run(tmp_path, values, "out", resume_from_checkpoint=str(checkpoint))


class _RunsCodeWhenUnpickled:
    """A pickle payload: unpickling it calls `os.system`, which would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("name", ["optimizer.bin", "scheduler.bin", "random_states_0.pkl"])
def test_checkpoint_pickles_are_never_unpickled_freely(tmp_path, tokenizer_dir, name):
    """A checkpoint file replaced by a code-running pickle is refused as damaged, and its code does not run: the
    non-safetensors files of a checkpoint are read with `torch.load(weights_only=True)` only."""
    values = _with_tokenizer(tiny_run_config(), tokenizer_dir)
    _run(tmp_path, values, "out", stop_after_steps=3)
    checkpoint = list_checkpoints(tmp_path / "out")[-1]
    marker = tmp_path / "code_ran"
    assert (checkpoint / name).is_file()
    torch.save(_RunsCodeWhenUnpickled(marker), checkpoint / name)
    with pytest.raises(CheckpointError, match=f"checkpoint {checkpoint} is damaged"):
        _run(tmp_path, values, "out", resume_from_checkpoint=str(checkpoint))
    assert not marker.exists()


def _poison_losses(monkeypatch, poisoned_calls) -> None:
    """Makes the CRF loss NaN on the given (1-based) calls of a head's negative_log_likelihood."""
    import modeling_hstl

    original = modeling_hstl.HSTLTaskHead.negative_log_likelihood
    calls = {"count": 0}

    def poisoned(self, emissions, labels, word_mask):
        calls["count"] += 1
        loss = original(self, emissions, labels, word_mask)
        return loss * float("nan") if calls["count"] in poisoned_calls else loss

    monkeypatch.setattr(modeling_hstl.HSTLTaskHead, "negative_log_likelihood", poisoned)


def test_nan_loss_stops_with_step_and_task(tmp_path, tokenizer_dir, monkeypatch):
    _poison_losses(monkeypatch, range(3, 1000))
    values = _with_tokenizer(tiny_run_config(batch_mode="homogeneous"), tokenizer_dir)
    with pytest.raises(NonFiniteError, match=r"non-finite loss at step \d+ on task\(s\) \['(chem|disease)'\]"):
        _run(tmp_path, values, "out")
    assert not (tmp_path / "out/model.safetensors").exists()


def test_nan_loss_skip_policy_keeps_weights_finite(tmp_path, tokenizer_dir, monkeypatch):
    _poison_losses(monkeypatch, (2, 3))
    values = _with_tokenizer(tiny_run_config(nonfinite_policy="skip", batch_mode="homogeneous",
                                             checkpointing_steps=0), tokenizer_dir)
    _run(tmp_path, values, "out")
    weights = load_file(tmp_path / "out/model.safetensors")
    assert all(torch.isfinite(tensor).all() for tensor in weights.values())


def test_optimizer_groups_cover_every_parameter_once(tmp_path, tokenizer_dir):
    values = _with_tokenizer(tiny_run_config(), tokenizer_dir)
    run_config = run_config_from_dict(values, source="test.yaml", base_dir=tmp_path)
    from hstl.tokenization import load_tokenizer

    model = build_model(run_config, load_task_data(run_config), load_tokenizer(str(tokenizer_dir)))
    optimizer = build_optimizer(model, run_config)
    names = {group["name"]: group for group in optimizer.param_groups}
    assert names["encoder"]["lr"] == 1e-3 and names["heads"]["lr"] == 1e-2
    assert names["heads/no_decay"]["weight_decay"] == 0.0
    crf_ids = {id(p) for head in model.heads.values() for p in head.crf.parameters()}
    assert crf_ids <= {id(p) for p in names["heads/no_decay"]["params"]}
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_run_config_errors_name_file_and_key(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("model:\n  encoder: x\ntasks:\n  - {name: a, family: b, data_dir: c}\ntraining:\n  max_stepz: 3\n")
    with pytest.raises(RunConfigError, match=r"bad.yaml: training: unknown key\(s\) \['max_stepz'\]"):
        load_run_config(config)
    config.write_text("model: [unclosed\n")
    with pytest.raises(RunConfigError, match=r"bad.yaml:\d+: not valid YAML"):
        load_run_config(config)
    config.write_text("model:\n  encoder: x\ntasks:\n  - {name: a, family: b, data_dir: c}\ntraining:\n  max_steps: many\n")
    with pytest.raises(RunConfigError, match=r"training.max_steps: expected"):
        load_run_config(config)


def _script_env(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ACCELERATE_", "LOCAL_RANK"))}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return env


def test_train_script_bad_arguments_exit_with_one_line(tmp_path):
    completed = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--config", str(tmp_path / "missing.yaml"), "--output_dir",
         str(tmp_path / "out")], capture_output=True, text=True, cwd=tmp_path, env=_script_env(tmp_path), timeout=300,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'missing.yaml'}: no such config file"


@pytest.mark.slow
def test_two_processes_follow_the_one_process_loss_curve(tmp_path, tokenizer_dir):
    """2 gloo processes with the global batch split in halves see the same examples per step as 1 process, so the
    loss curve matches up to float reduction order (DDP averages two half-batch mean gradients where one process
    takes one full-batch mean). Dropout is off, so rtol 1e-3 over 6 steps leaves a wide margin above ~1e-6 float
    noise, while any change of data or of gradient scale (e.g. summing instead of averaging) moves losses by >1e-2."""
    values = _with_tokenizer(tiny_run_config(checkpointing_steps=0), tokenizer_dir)
    import yaml

    config = tmp_path / "tiny.yaml"
    values["data_root"] = str(tmp_path)
    config.write_text(yaml.safe_dump(values))
    common = [str(REPO / "train.py"), "--config", str(config), "--cpu"]
    env = _script_env(tmp_path)
    one = subprocess.run([sys.executable, *common, "--output_dir", str(tmp_path / "one")], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
         *common, "--output_dir", str(tmp_path / "two")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert json.loads((tmp_path / "two/all_results.json").read_text())["num_processes"] == 2
    assert json.loads((tmp_path / "one/all_results.json").read_text())["num_processes"] == 1
    curve_one = [json.loads(l)["train_loss"] for l in (tmp_path / "one/train_log.jsonl").read_text().splitlines()
                 if "train_loss" in l]
    curve_two = [json.loads(l)["train_loss"] for l in (tmp_path / "two/train_log.jsonl").read_text().splitlines()
                 if "train_loss" in l]
    assert len(curve_one) == len(curve_two) == 6
    torch.testing.assert_close(torch.tensor(curve_two), torch.tensor(curve_one), rtol=1e-3, atol=0)


def test_demo_config_command_produces_remote_code_folder(tmp_path):
    """The README's main job, shortened (on the from-scratch demo, which needs no pretrained weights): train.py; the
    folder then loads as remote code alone."""
    completed = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--config", str(REPO / "configs/demo-xlnet-scratch.yaml"),
         "--output_dir", str(tmp_path / "demo"), "--max_steps", "4", "--eval_steps", "0", "--checkpointing_steps", "0"],
        capture_output=True, text=True, cwd=tmp_path, env=_script_env(tmp_path), timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Model folder:" in completed.stdout and "BC5CDR-chem" in completed.stdout
    folder = tmp_path / "demo"
    moved = tmp_path / "moved_model"
    shutil.copytree(folder, moved, ignore=shutil.ignore_patterns("checkpoints", "tokenizer"))

    script = (
        "import sys, importlib.abc\n"
        "class B(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'hstl' or name.startswith('hstl.'): raise ImportError(name)\n"
        "sys.meta_path.insert(0, B())\n"
        "from transformers import AutoModel, AutoTokenizer\n"
        "m = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True)\n"
        "t = AutoTokenizer.from_pretrained(sys.argv[1])\n"
        "print(type(m).__name__, m.config.task_names, t.padding_side)\n"
    )
    check = subprocess.run([sys.executable, "-c", script, str(moved)], capture_output=True, text=True,
                           cwd=tmp_path, env=_script_env(tmp_path), timeout=300)
    assert check.returncode == 0, check.stderr[-3000:]
    assert "HSTLModel ['BC5CDR-chem', 'BC5CDR-disease', 'NCBI-disease', 'BC2GM', 'linnaeus'] left" in check.stdout


@pytest.mark.parametrize("name", ["demo.yaml", "demo-xlnet-scratch.yaml", "paper.yaml", "bioner-all.yaml",
                                  "bench-minilm.yaml"])
def test_shipped_run_configs_load(name):
    run_config = load_run_config(REPO / "configs" / name)
    assert run_config.tasks and all(task.family for task in run_config.tasks)


@pytest.mark.parametrize("name", ["compare-full.yaml", "compare-mini.yaml", "paper-compare.yaml",
                                  "data-efficiency.yaml"])
def test_shipped_experiment_configs_load_with_their_model_settings(name):
    """Every config in configs/ loads with its own loader, model settings (HSTLConfig arguments) included."""
    from hstl.experiments.config import load_comparison_config
    from hstl.experiments.data_efficiency import load_data_efficiency_config

    path = REPO / "configs" / name
    config = (load_data_efficiency_config if name.startswith("data-") else load_comparison_config)(path)
    written = yaml.safe_load(path.read_text())["model"]
    settings = {key: value for key, value in written.items() if key not in ("encoder", "encoder_config", "tokenizer")}
    assert config.model.hstl_config == settings


@pytest.mark.corpora
def test_config_over_all_shared_corpora_trains(tmp_path, bioner_dir, tokenizer_dir):
    """configs/bioner-all.yaml (every corpus of ../shared/data/bioner), with a tiny scratch encoder and capped data."""
    import yaml

    values = yaml.safe_load((REPO / "configs/bioner-all.yaml").read_text())
    values["data_root"] = str(bioner_dir)
    values["model"] = tiny_run_config()["model"] | {"tokenizer": str(tokenizer_dir)}
    for task in values["tasks"]:
        # 30 training sentences of a many-type corpus miss types that its 10 test sentences hold
        task.update(max_train_sentences=30, max_validation_sentences=10, max_test_sentences=10,
                    allow_labels_only_in_evaluation=True)
    values["training"] = tiny_run_config(max_steps=2, checkpointing_steps=0)["training"]
    outcome = _run(tmp_path, values, "out")
    assert set(outcome.results["test"]) - {"mean_f1"} == {task["name"] for task in values["tasks"]}
    assert len(values["tasks"]) == len([p for p in bioner_dir.iterdir() if p.is_dir()])


def test_epoch_budget_becomes_whole_steps(tmp_path, tokenizer_dir):
    """`num_train_epochs: 1.5` over 2 x 10 sentences that each fit one window, batch 4: 5 batches an epoch, so
    ceil(7.5) = 8 steps; run_config.yaml keeps the epochs (rerunning it gives the same budget)."""
    values = _with_tokenizer(tiny_run_config(num_train_epochs=1.5, max_length=256, checkpointing_steps=0), tokenizer_dir)
    del values["training"]["max_steps"]
    for task in values["tasks"]:
        task["max_train_sentences"] = 10
    run_config = run_config_from_dict(values, source="test.yaml", base_dir=tmp_path)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    for task in load_task_data(run_config):  # the premise: one window per sentence
        assert len(task.splits["train"]) == 10
        assert max(len(tokenizer(s.tokens, is_split_into_words=True)["input_ids"]) for s in task.splits["train"]) < 250
    outcome = run_training(run_config, LoopArguments(output_dir=str(tmp_path / "out"), cpu=True))
    assert outcome.completed_steps == 8
    saved = load_run_config(tmp_path / "out/run_config.yaml").training
    assert (saved.num_train_epochs, saved.max_steps) == (1.5, None)
    card = (tmp_path / "out/README.md").read_text()
    assert "| num_train_epochs | 1.5 |" in card and "| max_steps |" not in card


def test_one_budget_per_training_section(tmp_path):
    with pytest.raises(RunConfigError, match=r"t\.yaml: training: .*max_steps.*num_train_epochs.*both"):
        run_config_from_dict(tiny_run_config(num_train_epochs=2), source="t.yaml")
    for epochs in (0, float("inf")):
        with pytest.raises(RunConfigError, match=r"t\.yaml: training: num_train_epochs: expected a positive"):
            run_config_from_dict({**tiny_run_config(), "training": {"num_train_epochs": epochs}}, source="t.yaml")
    with pytest.raises(RunConfigError, match=r"t\.yaml: training: early_stopping_threshold: expected a non-negative"):
        run_config_from_dict(tiny_run_config(early_stopping_threshold=None), source="t.yaml")
    from hstl.cli import apply_overrides

    values = tiny_run_config()
    values["training"] = {"num_train_epochs": 2}
    run_config = run_config_from_dict(values, source="t.yaml")
    args = type("Args", (), {"data_root": None, "seed": None, "max_steps": 7, "train_batch_size": None,
                             "eval_steps": None, "checkpointing_steps": None, "push_to_hub": False})()
    training = apply_overrides(run_config, args).training
    assert (training.max_steps, training.num_train_epochs) == (7, None)
