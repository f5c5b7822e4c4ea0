"""Training that never lies: exact resume with dropout, refused resumes, finished runs, process counts, datasets and
argument errors in one line, and the loop's own invariants (epochs, best model, gradient accumulation)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import tiny_run_config
from hstl.checkpointing import TRAINER_STATE, list_checkpoints, read_trainer_state
from hstl.errors import CheckpointError, DatasetInputError, RunConfigError
from hstl.run_config import load_run_config, run_config_from_dict
from hstl.training import LoopArguments, run_training


REPO = Path(__file__).resolve().parents[1]


def _values(tokenizer_dir, **training):
    """The tiny run config with the session's tokenizer, scoring 10 validation and test sentences per corpus."""
    values = tiny_run_config(**training)
    values["model"]["tokenizer"] = str(tokenizer_dir)
    for task in values["tasks"]:
        task["max_validation_sentences"] = task["max_test_sentences"] = 10
    return values


def _run(tmp_path, values, name, **loop):
    run_config = run_config_from_dict(values, source="test.yaml", base_dir=tmp_path)
    return run_training(run_config, LoopArguments(output_dir=str(tmp_path / name), cpu=True, **loop))


def _assert_same_weights(folder_a: Path, folder_b: Path) -> None:
    a, b = load_file(folder_a / "model.safetensors"), load_file(folder_b / "model.safetensors")
    assert a.keys() == b.keys()
    different = [key for key in a if not torch.equal(a[key], b[key])]
    assert not different, different


def _env(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ACCELERATE_", "LOCAL_RANK"))}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return env


# ---------------------------------------------------------------------------------------------------------------------
# Exact resume


def _dropout_values(tokenizer_dir):
    """Dropout 0.1 in encoder and hierarchy; 2 capped sentences per corpus make epochs of a few batches, so that a
    6-step run resumed after step 3 crosses an epoch boundary."""
    values = _values(tokenizer_dir, max_steps=6, checkpointing_steps=3)
    values["model"]["encoder_config"]["dropout"] = 0.1
    values["model"]["hidden_dropout"] = 0.1
    for task in values["tasks"]:
        task["max_train_sentences"] = 2
        task["max_validation_sentences"] = task["max_test_sentences"] = 5
    return values


def test_resume_with_dropout_across_an_epoch_boundary_is_exact(tmp_path, tiny_tokenizer_dir):
    values = _dropout_values(tiny_tokenizer_dir)
    _run(tmp_path, values, "straight")
    _run(tmp_path, values, "resumed", stop_after_steps=4)  # "killed" after step 4: resumes from step 3
    _run(tmp_path, values, "resumed", resume_from_checkpoint="latest")
    _assert_same_weights(tmp_path / "straight", tmp_path / "resumed")
    step_3, step_6 = (read_trainer_state(path) for path in list_checkpoints(tmp_path / "resumed"))
    assert step_6["epoch"] > step_3["epoch"]  # the resumed part crossed into a new epoch
    # dropout is on: a run with another seed for its dropout masks alone ends elsewhere
    other = _dropout_values(tiny_tokenizer_dir)
    other["model"]["encoder_config"]["dropout"] = 0.2
    _run(tmp_path, other, "other_dropout")
    assert not torch.equal(load_file(tmp_path / "straight/model.safetensors")["heads.chem.emission.weight"],
                           load_file(tmp_path / "other_dropout/model.safetensors")["heads.chem.emission.weight"])


# train.py, stopped as if killed after STOP_AFTER_STEPS optimizer steps (the loop's test hook, on every process).
STOPPING_TRAIN = textwrap.dedent(
    """
    import os, sys
    from hstl.commands import train

    parse_args = train.parse_args

    def parse_and_stop(argv=None):
        args = parse_args(argv)
        args.stop_after_steps = int(os.environ["STOP_AFTER_STEPS"]) if "STOP_AFTER_STEPS" in os.environ else None
        return args

    train.parse_args = parse_and_stop
    sys.exit(train.main())
    """
)


@pytest.mark.slow
def test_two_process_resume_with_dropout_is_exact(tmp_path, tiny_tokenizer_dir):
    values = _dropout_values(tiny_tokenizer_dir)
    values["data_root"] = str(tmp_path)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(values))
    script = tmp_path / "stopping_train.py"
    script.write_text(STOPPING_TRAIN)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
              str(REPO / "configs/accelerate/cpu_2proc.yaml"), "--main_process_port", "29533", str(script),
              "--config", str(config), "--cpu"]

    def launched(*extra, env=()):
        done = subprocess.run([*launch, *extra], env=_env(tmp_path) | dict(env), cwd=tmp_path, capture_output=True,
                              text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]

    launched("--output_dir", str(tmp_path / "straight"))
    launched("--output_dir", str(tmp_path / "resumed"), env={"STOP_AFTER_STEPS": "4"})
    assert not (tmp_path / "resumed/all_results.json").exists()
    launched("--output_dir", str(tmp_path / "resumed"), "--resume_from_checkpoint", "latest")
    assert json.loads((tmp_path / "resumed/all_results.json").read_text())["num_processes"] == 2
    assert read_trainer_state(list_checkpoints(tmp_path / "resumed")[-1])["epoch"] >= 1
    _assert_same_weights(tmp_path / "straight", tmp_path / "resumed")


def test_resume_with_other_settings_is_refused_naming_them(tmp_path, tiny_tokenizer_dir):
    values = _values(tiny_tokenizer_dir)
    _run(tmp_path, values, "out", stop_after_steps=3)
    changes = [
        ("seed", lambda v: v["training"].update(seed=8), r"training\.seed: 7 in the checkpoint, 8 now"),
        ("batch", lambda v: v["training"].update(train_batch_size=8),
         r"training\.train_batch_size: 4 in the checkpoint, 8 now"),
        ("cap", lambda v: v["tasks"][1].update(max_train_sentences=30),
         r"tasks\[1\]\.max_train_sentences: 40 in the checkpoint, 30 now"),
        ("corpus", lambda v: v["tasks"][0].update(data_dir="sample:BC5CDR-disease"),
         r"tasks\[0\]\.data_dir: 'sample:BC5CDR-chem' in the checkpoint, 'sample:BC5CDR-disease' now"),
        ("encoder", lambda v: v["model"]["encoder_config"].update(d_inner=48),
         r"model\.encoder_config\.d_inner: 64 in the checkpoint, 48 now"),
        ("learning rate", lambda v: v["training"].update(encoder_learning_rate=5e-4),
         r"training\.encoder_learning_rate: 0\.001 in the checkpoint, 0\.0005 now"),
        ("dropout", lambda v: v["model"].update(hidden_dropout=0.2), r"model\.hidden_dropout: 0\.0 in the checkpoint, "),
    ]
    for _, change, message in changes:
        changed = _values(tiny_tokenizer_dir)
        change(changed)
        with pytest.raises(CheckpointError, match=f"expected the run config it was written with, got {message}"):
            _run(tmp_path, changed, "out", resume_from_checkpoint="latest")
    # the budget and the intervals may change: 8 steps instead of 6, evaluated at the end
    longer = _run(tmp_path, _values(tiny_tokenizer_dir, max_steps=8, eval_steps=4, checkpointing_steps=4,
                                    logging_steps=2), "out", resume_from_checkpoint="latest")
    assert longer.completed_steps == 8


def test_resume_reads_the_sampler_state_back(tmp_path, tiny_tokenizer_dir):
    """The sampler state in trainer_state.json is loaded: one that does not fit this sampler is refused."""
    values = _values(tiny_tokenizer_dir)
    _run(tmp_path, values, "out", stop_after_steps=3)
    state_path = list_checkpoints(tmp_path / "out")[-1] / TRAINER_STATE
    state = json.loads(state_path.read_text())
    state["sampler"]["strategy"] = "uniform"
    state_path.write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match=r"strategy saved 'uniform', here 'temperature'"):
        _run(tmp_path, values, "out", resume_from_checkpoint="latest")


def test_resuming_a_finished_run_leaves_it_as_it_was(tmp_path, tiny_tokenizer_dir, capsys):
    values = _values(tiny_tokenizer_dir, eval_steps=2)
    first = _run(tmp_path, values, "out")
    out = tmp_path / "out"
    before = {path.relative_to(out): path.read_bytes() for path in out.rglob("*") if path.is_file()}
    again = _run(tmp_path, values, "out", resume_from_checkpoint="latest")
    after = {path.relative_to(out): path.read_bytes() for path in out.rglob("*") if path.is_file()}
    assert after == before
    assert again.results == json.loads((out / "all_results.json").read_text()) == first.results
    assert "holds a finished run" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------------------
# Processes, arguments, corpora


def test_world_size_that_accelerate_does_not_see_is_refused(tmp_path, tiny_tokenizer_dir, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RunConfigError, match=r"WORLD_SIZE=2: the launcher started 2 processes, but each runs as one "
                                             r"of 1"):
        _run(tmp_path, _values(tiny_tokenizer_dir), "out")
    assert not (tmp_path / "out").exists()


NO_TORCH_CHECK = textwrap.dedent(
    """
    import sys
    from hstl.cli import run_cli
    import {module} as script
    code = run_cli(lambda: script.main(sys.argv[1:]))
    heavy = sorted(name for name in ("torch", "accelerate", "transformers", "datasets") if name in sys.modules)
    print("exit", code, "heavy", heavy)
    """
)


@pytest.mark.parametrize("module, argv, message", [
    ("train", ["--config", "{tmp}/missing.yaml", "--output_dir", "{tmp}/out"], "error: {tmp}/missing.yaml: no such "
     "config file"),
    ("train", ["--config", "{tmp}/bad.yaml", "--output_dir", "{tmp}/out"], "error: {tmp}/bad.yaml: training: "
     "unknown key(s) ['max_stepz']"),
    ("finetune", ["--model", "{tmp}/missing", "--task", "x", "--family", "y", "--train_file", "{tmp}/t.tsv",
                  "--output_dir", "{tmp}/out"], "error: --model: expected a model folder or a Hub id (user/name), "
     "got '{tmp}/missing': no such folder, and not a valid Hub id"),
])
def test_bad_arguments_are_one_line_without_torch(tmp_path, module, argv, message):
    (tmp_path / "bad.yaml").write_text("model:\n  encoder: x\ntasks:\n  - {name: a, family: b, data_dir: c}\n"
                                       "training:\n  max_stepz: 3\n")
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    done = subprocess.run([sys.executable, "-c", NO_TORCH_CHECK.format(module=module), *argv], capture_output=True,
                          text=True, cwd=REPO, env=_env(tmp_path), timeout=120)
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(message.format(tmp=tmp_path))
    assert done.stdout.split() == ["exit", "2", "heavy", "[]"]


def test_finetune_missing_train_file_names_argument_and_task(tmp_path, tiny_model_dir, capsys):
    import finetune
    from hstl.cli import run_cli

    missing = tmp_path / "nope.tsv"
    code = run_cli(lambda: finetune.main(["--model", str(tiny_model_dir), "--task", "chem", "--train_file",
                                          str(missing), "--output_dir", str(tmp_path / "out"), "--cpu"]))
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: --train_file (task chem): expected a corpus file, got no such file: {missing}"]


def test_config_missing_train_file_names_task_and_key(tmp_path):
    from hstl.corpora import load_task_data

    values = tiny_run_config()
    values["tasks"][1] = {"name": "disease", "family": "disease", "train_file": "absent/train.tsv"}
    run_config = run_config_from_dict(values, source="run.yaml", base_dir=tmp_path)
    with pytest.raises(RunConfigError, match=r"^run.yaml: tasks\[1\] \(disease\)\.train_file: expected a corpus file, "
                                             rf"got no such file {tmp_path}/absent/train.tsv$"):
        load_task_data(run_config)


def test_corpus_loading_imports_neither_torch_nor_accelerate(tmp_path):
    script = textwrap.dedent(
        """
        import sys
        from hstl.corpora import load_task_data
        from hstl.run_config import run_config_from_dict
        values = {"model": {"encoder": "none"}, "tasks": [
            {"name": "chem", "family": "chemical", "data_dir": "sample:BC5CDR-chem", "max_train_sentences": 5},
            {"name": "ncbi", "family": "disease", "train_file": "sample:NCBI-disease/train.tsv"}]}
        tasks = load_task_data(run_config_from_dict(values))
        print([(task.name, {split: len(s) for split, s in task.splits.items()}) for task in tasks])
        print(sorted(name for name in ("torch", "accelerate", "transformers", "datasets") if name in sys.modules))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                          env=_env(tmp_path), timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded, heavy = done.stdout.strip().splitlines()
    assert loaded == "[('chem', {'train': 5, 'validation': 100, 'test': 100}), ('ncbi', {'train': 400})]"
    assert heavy == "[]"


# ---------------------------------------------------------------------------------------------------------------------
# datasets sources


@pytest.fixture
def hf_datasets(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    return datasets


def _hf_task_config(tmp_path, hf_dataset, **task):
    values = tiny_run_config()
    values["tasks"] = [{"name": "x", "family": "f", "hf_dataset": hf_dataset, **task}]
    return run_config_from_dict(values, source="run.yaml", base_dir=tmp_path)


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_single_file_dataset_is_refused_unless_it_is_the_only_split(tmp_path, hf_datasets):
    from hstl.corpora import load_task_data

    _write_jsonl(tmp_path / "all.jsonl", [{"tokens": ["a", "b"], "ner_tags": ["B-X", "O"]}])
    with pytest.raises(RunConfigError, match=r"^run.yaml: tasks\[0\] \(x\)\.hf_dataset: .*all.jsonl is a single file, "
                                             r"one split, but would be read as \['test', 'train', 'validation'\]"):
        load_task_data(_hf_task_config(tmp_path, "all.jsonl"))
    (task,) = load_task_data(_hf_task_config(tmp_path, "all.jsonl", hf_validation_split=None, hf_test_split=None))
    assert list(task.splits) == ["train"] and task.splits["train"][0].labels == ["B-X", "O"]


def test_datasets_errors_are_one_line_naming_the_column_or_split(tmp_path, hf_datasets, monkeypatch):
    from hstl.corpora import load_task_data
    from hstl.errors import USER_ERRORS

    assert DatasetInputError in USER_ERRORS
    for folder, tag in (("ints", 1), ("names", "B-X")):
        _write_jsonl(tmp_path / folder / "train.jsonl", [{"tokens": ["a"], "ner_tags": [tag]}])
        _write_jsonl(tmp_path / folder / "validation.jsonl", [{"tokens": ["a"], "ner_tags": [tag]}])
    cases = [
        (_hf_task_config(tmp_path, "ints", hf_test_split=None),
         r"dataset '.*ints' split 'train' row 0 column 'ner_tags': expected IOB2 label names \(integer tags need a "
         r"ClassLabel feature"),
        (_hf_task_config(tmp_path, "names"),
         r"dataset '.*names' split 'test': Unknown split \"test\". Should be one of \['train', 'validation'\]"),
        (_hf_task_config(tmp_path, "someone/absent-dataset"),
         r"dataset 'someone/absent-dataset': no such local folder or file, and the Hub is unreachable"),
    ]
    monkeypatch.setattr(hf_datasets.config, "HF_HUB_OFFLINE", True)
    for run_config, message in cases:
        with pytest.raises(DatasetInputError, match=message) as caught:
            load_task_data(run_config)
        assert "\n" not in str(caught.value)


# ---------------------------------------------------------------------------------------------------------------------
# HSTLConfig arguments from the run config


def test_model_section_sets_any_hstl_config_argument(tmp_path, tiny_tokenizer_dir):
    from hstl.corpora import load_task_data
    from hstl.tokenization import load_tokenizer
    from hstl.training import build_model

    values = _values(tiny_tokenizer_dir)
    values["model"].update(initializer_range=0.5, crf_init_range=0.0)
    run_config = run_config_from_dict(values, source="run.yaml", base_dir=tmp_path)
    model = build_model(run_config, load_task_data(run_config), load_tokenizer(str(tiny_tokenizer_dir)))
    assert model.config.initializer_range == 0.5 and model.config.crf_init_range == 0.0
    assert (model.config.window_max_length, model.config.window_overlap) == (48, 8)  # training's windows
    crf = model.heads["chem"].crf
    assert all(torch.count_nonzero(t) == 0 for t in (crf.transitions, crf.start_transitions, crf.end_transitions))
    assert model.heads["chem"].emission.weight.std() > 0.3  # drawn with std 0.5, not the default 0.02
    run_config.save(tmp_path / "saved.yaml")
    assert load_run_config(tmp_path / "saved.yaml").model.hstl_config == {
        "hidden_dropout": 0.0, "initializer_range": 0.5, "crf_init_range": 0.0}


def test_model_section_unknown_key_is_one_line_listing_the_allowed_ones():
    values = tiny_run_config()
    values["model"]["crf_init_rnage"] = 0.1
    with pytest.raises(RunConfigError) as caught:
        run_config_from_dict(values, source="run.yaml")
    message = str(caught.value)
    assert message.startswith("run.yaml: model: unknown key(s) ['crf_init_rnage']; known keys: [") and "\n" not in message
    for allowed in ("crf_init_range", "initializer_range", "hidden_dropout", "family_hidden_size", "encoder"):
        assert f"'{allowed}'" in message
    values["model"] = tiny_run_config()["model"] | {"hidden_dropout": 1.5}
    with pytest.raises(RunConfigError, match=r"run.yaml: model: hidden_dropout: expected a value in \[0, 1\)"):
        from hstl.training import build_model

        build_model(run_config_from_dict(values, source="run.yaml"), [], None)


# ---------------------------------------------------------------------------------------------------------------------
# The loop's invariants


def test_task_order_differs_between_epochs(tmp_path, tiny_tokenizer_dir, monkeypatch):
    """The loop shows each epoch its own batch order: homogeneous batches, 4 epochs of a few batches each."""
    from hstl import training

    seen: dict[int, list[int]] = {}
    original = training.train_on_batch

    def recording(run, batch, running):
        seen.setdefault(run.state.epoch, []).append(int(batch["task_ids"][0]))
        return original(run, batch, running)

    monkeypatch.setattr(training, "train_on_batch", recording)
    values = _values(tiny_tokenizer_dir, batch_mode="homogeneous", checkpointing_steps=0, sampling_strategy="uniform")
    for task in values["tasks"]:
        task["max_train_sentences"] = 12
    values["training"]["max_steps"] = 4 * 8  # epochs of about 8 batches
    _run(tmp_path, values, "out")
    orders = [tuple(seen[epoch]) for epoch in sorted(seen)]
    assert len(orders) >= 3 and len(orders[0]) >= 6
    assert len(set(orders[:3])) == 3, orders
    assert all(set(order) == {0, 1} for order in orders[:3])  # each epoch still draws both tasks


def test_nan_weights_are_never_saved_as_the_best_model(tmp_path, tiny_tokenizer_dir, monkeypatch):
    """Every evaluation scores better than the last; at step 3 the weights turn NaN. The final folder holds the
    step-2 weights, finite, and not the NaN ones with the best score."""
    from hstl import training

    def improving(run, split):
        return {"chem": {"f1": run.state.completed_steps / 10}, "mean_f1": run.state.completed_steps / 10}

    original_keep_best = training._evaluate_and_keep_best

    def poisoning(run):
        if run.state.completed_steps == 3:
            with torch.no_grad():
                run.accelerator.unwrap_model(run.model).heads["chem"].emission.weight.fill_(float("nan"))
        original_keep_best(run)

    monkeypatch.setattr(training, "_evaluate", improving)
    monkeypatch.setattr(training, "_evaluate_and_keep_best", poisoning)
    values = _values(tiny_tokenizer_dir, max_steps=3, eval_steps=1, checkpointing_steps=0)
    outcome = _run(tmp_path, values, "out")
    weights = load_file(tmp_path / "out/model.safetensors")
    assert all(torch.isfinite(tensor).all() for tensor in weights.values())
    assert outcome.best_score == pytest.approx(0.2)


def test_the_kept_model_has_the_best_mean_validation_f1(tmp_path, tiny_tokenizer_dir, monkeypatch):
    """Three evaluations whose best first-task F1 (step 1) and best mean F1 (step 2) differ: the folder ends with the
    weights of step 2, and the run reports step 2's mean."""
    from hstl import training

    validation = {1: {"chem": 0.9, "disease": 0.1}, 2: {"chem": 0.2, "disease": 0.9}, 3: {"chem": 0.5, "disease": 0.4}}
    weights_at: dict[int, dict[str, torch.Tensor]] = {}

    def scripted(run, split):
        step = run.state.completed_steps
        scores = validation[step] if split == "validation" and step not in weights_at else {"chem": 0.0,
                                                                                              "disease": 0.0}
        if split == "validation" and step not in weights_at:
            model = run.accelerator.unwrap_model(run.model)
            weights_at[step] = {key: value.detach().clone() for key, value in model.state_dict().items()}
        results = {name: {"f1": f1} for name, f1 in scores.items()}
        return {**results, "mean_f1": sum(scores.values()) / len(scores)}

    monkeypatch.setattr(training, "_evaluate", scripted)
    values = _values(tiny_tokenizer_dir, max_steps=3, eval_steps=1, checkpointing_steps=0)
    outcome = _run(tmp_path, values, "out")
    assert outcome.best_score == pytest.approx(0.55)
    final = load_file(tmp_path / "out/model.safetensors")
    assert sorted(weights_at) == [1, 2, 3]
    assert not all(torch.equal(weights_at[1][key], weights_at[2][key]) for key in final)  # the steps differ
    for key, value in final.items():
        assert torch.equal(value, weights_at[2][key]), key


@pytest.mark.parametrize("max_grad_norm", [1.0, float("inf")], ids=["clipped", "clipping_off"])
def test_accumulating_two_batches_equals_one_batch_of_twice_the_size(max_grad_norm, tmp_path, tiny_tokenizer_dir,
                                                                     monkeypatch):
    """One optimizer step over 2 accumulated batches of 4 ends with the weights of one step over a batch of 8 (the same
    8 examples: in mixed mode the sampler's slots are one stream, whatever the batch size). Dropout is 0. Adam's
    epsilon is raised so that an update is smooth in the gradient (with the default, a ~1e-9 gradient would move a
    weight by a whole learning rate in either direction), so float noise stays float noise. With clipping off the
    gradient's scale reaches the weights: clipping to norm 1 would hide a loss scaled wrongly by the accumulation."""
    from hstl import training
    from hstl.sampling import MultiTaskBatchSampler

    small = MultiTaskBatchSampler([50, 60], batch_size=4, strategy="temperature", alpha=0.5, batch_mode="mixed",
                                  seed=7, num_batches=20)
    large = MultiTaskBatchSampler([50, 60], batch_size=8, strategy="temperature", alpha=0.5, batch_mode="mixed",
                                  seed=7, num_batches=10)
    small_batches, large_batches = list(small), list(large)
    assert small_batches[0] + small_batches[1] == large_batches[0]  # the premise: the same 8 examples

    original_build_optimizer = training.build_optimizer

    def smooth_adam(model, run_config):
        optimizer = original_build_optimizer(model, run_config)
        for group in optimizer.param_groups:
            group["eps"] = 1.0
        return optimizer

    monkeypatch.setattr(training, "build_optimizer", smooth_adam)
    # Without length grouping: the sampler then serves the premise's slots (grouping forms batches by length, so
    # batches of 4 and of 8 would hold other examples).
    common = dict(max_steps=1, checkpointing_steps=0, batch_mode="mixed", warmup_ratio=0.0, group_by_length=False,
                  max_grad_norm=max_grad_norm)
    _run(tmp_path, _values(tiny_tokenizer_dir, train_batch_size=8, **common), "one_batch")
    _run(tmp_path, _values(tiny_tokenizer_dir, train_batch_size=4, gradient_accumulation_steps=2, **common),
         "accumulated")
    one = load_file(tmp_path / "one_batch/model.safetensors")
    accumulated = load_file(tmp_path / "accumulated/model.safetensors")
    for key in one:
        torch.testing.assert_close(accumulated[key], one[key], rtol=0, atol=2e-7, msg=key)
