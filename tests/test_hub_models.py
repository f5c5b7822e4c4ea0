"""Hub ids with `--revision` in predict.py, finetune.py and hstl-evaluate (`hstl.hub.resolve_model`), offline, from a
Hugging Face cache built here by hand; and the model card that train.py and finetune.py leave in their folders.

The cache holds one repository, `org/name`, with two snapshots of different weights: `main` is the 6-step tiny model
(it finds almost nothing), the branch `talkative` the same model with large random emission weights (it finds many
mentions). So a command that ignored the revision, or loaded the wrong snapshot, gives other outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import ModelCard, constants
from safetensors.torch import load_file

import finetune
import predict
import train
from conftest import tiny_run_config
from hstl.cli import run_cli
from hstl.commands import evaluate as evaluate_model
from hstl.data import sample_data_dir
from hstl.hub import model_source, resolve_model
from test_evaluate_model import talkative_copy


REPO = Path(__file__).resolve().parents[1]
REPO_ID = "org/name"
TEXT = ("Cisplatin-induced nephrotoxicity was reduced by aspirin in patients with renal failure.\n\n"
        "Naloxone reverses the antihypertensive effect of clonidine.\n\n"
        "Lithium carbonate may cause diabetes insipidus and tremor in mice.\n")


def add_snapshot(cache: Path, repo_id: str, folder: Path, refs: list[str]) -> str:
    """Puts the files of `folder` into the Hugging Face cache `cache` the way huggingface_hub lays out a download:
    `models--org--name/blobs/<content hash>`, `snapshots/<commit>/<file>` as a relative symlink to its blob, and
    `refs/<branch>` holding the commit (no newline). Returns the commit (40 hex digits)."""
    storage = cache / ("models--" + repo_id.replace("/", "--"))
    files = sorted(path for path in folder.iterdir() if path.is_file())
    commit = hashlib.sha1(b"".join(path.name.encode() + path.read_bytes() for path in files)).hexdigest()
    snapshot = storage / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (storage / "blobs").mkdir(exist_ok=True)
    (storage / "refs").mkdir(exist_ok=True)
    for path in files:
        data = path.read_bytes()
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / path.name).symlink_to(Path("..", "..", "blobs", blob.name))
    for ref in refs:
        (storage / "refs" / ref).write_text(commit)
    return commit


@pytest.fixture(scope="module")
def local_models(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    """The two model folders the cache holds: `main` (the tiny train.py folder) and `talkative` (its copy with
    large emission weights, completed with the tiny folder's other files: remote code, card, results)."""
    talkative = talkative_copy(tiny_model_dir, tmp_path_factory.mktemp("talkative"))
    for path in tiny_model_dir.iterdir():
        if path.is_file() and not (talkative / path.name).exists():
            shutil.copyfile(path, talkative / path.name)
    return {"main": tiny_model_dir, "talkative": talkative}


@pytest.fixture(scope="module")
def hub_cache(local_models, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """(cache folder, {"main": commit, "talkative": commit})."""
    cache = tmp_path_factory.mktemp("hf_cache")
    commits = {"main": add_snapshot(cache, REPO_ID, local_models["main"], ["main"]),
               "talkative": add_snapshot(cache, REPO_ID, local_models["talkative"], ["talkative"])}
    assert commits["main"] != commits["talkative"]
    return cache, commits


@pytest.fixture
def offline_hub(hub_cache, monkeypatch) -> dict[str, str]:
    """This process reads the hand-built cache, with the Hub offline (as HF_HUB_CACHE and HF_HUB_OFFLINE=1 do for a
    new process; the subprocess test below sets the variables themselves). Returns the commits."""
    cache, commits = hub_cache
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return commits


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


# ---------------------------------------------------------------------------------------------------------------------
# The one home: resolve_model and model_source


def test_resolve_model_takes_folders_as_they_are_and_hub_ids_at_their_revision(offline_hub, hub_cache, local_models):
    cache, _ = hub_cache
    snapshots = cache / "models--org--name" / "snapshots"
    assert resolve_model(REPO_ID) == snapshots / offline_hub["main"]
    assert resolve_model(REPO_ID, "talkative") == snapshots / offline_hub["talkative"]
    assert resolve_model(REPO_ID, offline_hub["talkative"]) == snapshots / offline_hub["talkative"]  # a commit
    assert _weights(resolve_model(REPO_ID, "talkative")).keys() == _weights(local_models["talkative"]).keys()
    assert model_source(resolve_model(REPO_ID, "talkative")) == {"model": REPO_ID, "revision": offline_hub["talkative"]}
    assert resolve_model(str(local_models["main"])) == local_models["main"]
    assert model_source(local_models["main"]) == {"model": str(local_models["main"].resolve())}


FRESH_PROCESS_SCRIPT = r"""
import json, os, sys
os.environ["HF_HUB_CACHE"] = sys.argv[1]  # before huggingface_hub reads it
from transformers import AutoModelForTokenClassification

model = AutoModelForTokenClassification.from_pretrained("org/name", revision="talkative", trust_remote_code=True)
print(json.dumps({"class": f"{type(model).__module__}.{type(model).__name__}",
                  "emission": model.hstl.heads["chem"].emission.weight.flatten().tolist()}))
"""


@pytest.mark.slow
def test_a_hub_snapshot_loads_with_its_own_remote_code_without_hstl(hub_cache, local_models, tmp_path):
    """The snapshot a Hub id resolves to is a complete model repository: transformers loads it at the revision, in a
    fresh process where hstl and the top-level *_hstl modules cannot be imported, offline."""
    from fresh_process import run_without_hstl

    cache, _ = hub_cache
    loaded = run_without_hstl(FRESH_PROCESS_SCRIPT, [str(cache)], tmp_path)
    assert loaded["class"].startswith("transformers_modules.")
    assert loaded["class"].endswith("modeling_hstl.HSTLForTokenClassification")
    expected = _weights(local_models["talkative"])["heads.chem.emission.weight"].flatten().tolist()
    assert loaded["emission"] == expected


# ---------------------------------------------------------------------------------------------------------------------
# predict.py


def _predict(model: list[str], tmp_path: Path, name: str, *extra: str) -> str:
    (tmp_path / "text.txt").write_text(TEXT, encoding="utf-8")
    out = tmp_path / f"{name}.jsonl"
    assert predict.main([*model, "--input", str(tmp_path / "text.txt"), "--output", str(out), "--cpu",
                         *extra]) == 0
    return out.read_text(encoding="utf-8")


def test_predict_tags_with_the_hub_model_at_the_revision_asked(offline_hub, local_models, tmp_path):
    by_hub = {revision: _predict(["--model", REPO_ID, *(["--revision", revision] if revision else [])], tmp_path,
                                 f"hub-{revision}") for revision in (None, "talkative", offline_hub["talkative"])}
    by_folder = {name: _predict(["--model", str(folder)], tmp_path, name) for name, folder in local_models.items()}
    assert by_folder["main"] != by_folder["talkative"]  # so that the revision provably matters
    assert by_hub[None] == by_folder["main"]
    assert by_hub["talkative"] == by_hub[offline_hub["talkative"]] == by_folder["talkative"]
    assert '"entities": [{' in by_hub["talkative"]


def test_predict_resume_signature_records_the_hub_id_and_commit(offline_hub, tmp_path, capsys):
    (tmp_path / "text.txt").write_text(TEXT, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    base = ["--model", REPO_ID, "--input", str(tmp_path / "text.txt"), "--output", str(out), "--cpu",
            "--chunk_size", "1"]
    assert predict.main([*base, "--revision", "talkative", "--stop_after_chunks", "1"]) == 0
    signature = json.loads(out.with_name("out.jsonl.progress.json").read_text())["signature"]
    assert (signature["model"], signature["revision"]) == (REPO_ID, offline_hub["talkative"])
    capsys.readouterr()
    assert run_cli(lambda: predict.main([*base, "--resume"])) == 2  # main is another commit
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"got revision: '{offline_hub['talkative']}' in the interrupted run, '" in line
    assert predict.main([*base, "--revision", "talkative", "--resume"]) == 0 and out.is_file()


def _hub_env(cache: Path, tmp_path: Path, offline: bool = True) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "ACCELERATE_"))}
    env.update(HF_HUB_CACHE=str(cache), HF_HOME=str(tmp_path / "hf_home"), OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO), **({"HF_HUB_OFFLINE": "1"} if offline else {}))
    return env


def test_resolve_model_honours_hf_hub_cache_and_hf_hub_offline(hub_cache, tmp_path):
    """The real environment variables, in a new process (no monkeypatching): the branch comes from HF_HUB_CACHE, and
    HF_HUB_OFFLINE=1 is what the error for an uncached repository reports."""
    cache, commits = hub_cache
    script = ("import sys\nfrom hstl.cli import run_cli\nfrom hstl.hub import model_source, resolve_model\n"
              "print(model_source(resolve_model('org/name', 'talkative')))\n"
              "run_cli(lambda: resolve_model('org/absent'))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=_hub_env(cache, tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == str({"model": REPO_ID, "revision": commits["talkative"]})
    assert done.stderr.strip().endswith(f"not in the Hugging Face cache {cache}, and the Hub is offline "
                                        f"(HF_HUB_OFFLINE is set)")


@pytest.mark.slow
def test_predict_script_honours_hf_hub_cache_and_hf_hub_offline(hub_cache, local_models, tmp_path):
    """The real environment variables, in a new process: predict.py finds the branch in HF_HUB_CACHE, offline."""
    cache, _ = hub_cache
    (tmp_path / "text.txt").write_text(TEXT, encoding="utf-8")
    env = _hub_env(cache, tmp_path)
    done = subprocess.run([sys.executable, str(REPO / "predict.py"), "--model", REPO_ID, "--revision", "talkative",
                           "--input", str(tmp_path / "text.txt"), "--output", str(tmp_path / "hub.jsonl"), "--cpu"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    local = tmp_path / "local"
    local.mkdir()
    assert (tmp_path / "hub.jsonl").read_text() == _predict(["--model", str(local_models["talkative"])], local, "x")


# ---------------------------------------------------------------------------------------------------------------------
# hstl-evaluate


def _evaluate(model: list[str], out: Path) -> dict:
    argv = [*model, "--data_root", str(sample_data_dir()), "--corpora", "BC5CDR-chem", "--task_map",
            "BC5CDR-chem=chem", "--splits", "validation", "--output_dir", str(out), "--no_plot", "--cpu"]
    assert evaluate_model.run(argv) == 0
    return json.loads((out / "results.json").read_text())


def test_evaluate_scores_the_hub_model_at_the_revision_asked_and_records_it(offline_hub, local_models, tmp_path):
    by_folder = {name: _evaluate(["--model", str(folder)], tmp_path / name) for name, folder in local_models.items()}
    assert by_folder["main"] != by_folder["talkative"]
    assert _evaluate(["--model", REPO_ID], tmp_path / "hub-main") == by_folder["main"]
    assert _evaluate(["--model", REPO_ID, "--revision", "talkative"], tmp_path / "hub") == by_folder["talkative"]
    assert json.loads((tmp_path / "hub/model.json").read_text()) == {"model": REPO_ID,
                                                                    "revision": offline_hub["talkative"]}
    assert (tmp_path / "hub/results.md").read_text().startswith(
        f"Model: `{REPO_ID}` at revision `{offline_hub['talkative']}`\n")
    assert json.loads((tmp_path / "main/model.json").read_text()) == {"model": str(local_models["main"].resolve())}


# ---------------------------------------------------------------------------------------------------------------------
# finetune.py, and the card of its folder


def _finetune(model: list[str], out: Path) -> dict[str, torch.Tensor]:
    corpus = sample_data_dir() / "BC5CDR-chem"
    assert finetune.main([*model, "--task", "chem", "--train_file", str(corpus / "train.tsv"), "--output_dir",
                          str(out), "--max_steps", "1", "--eval_steps", "0", "--checkpointing_steps", "0",
                          "--train_batch_size", "4", "--cpu"]) == 0
    return _weights(out)


def test_finetune_starts_from_the_hub_model_at_the_revision_asked_and_records_it(offline_hub, local_models, tmp_path):
    from_folder = _finetune(["--model", str(local_models["talkative"])], tmp_path / "folder")
    from_hub = _finetune(["--model", REPO_ID, "--revision", "talkative"], tmp_path / "hub")
    from_main = _finetune(["--model", REPO_ID], tmp_path / "hub-main")
    assert from_hub.keys() == from_folder.keys()
    assert all(torch.equal(from_hub[key], from_folder[key]) for key in from_folder)
    assert not torch.equal(from_main["heads.chem.emission.weight"], from_hub["heads.chem.emission.weight"])
    model = yaml.safe_load((tmp_path / "hub/run_config.yaml").read_text())["model"]
    assert (model["init_from"], model["init_from_revision"]) == (REPO_ID, offline_hub["talkative"])
    card = ModelCard.load(tmp_path / "hub/README.md")
    assert f"of the HSTL model `{REPO_ID}` at revision `{offline_hub['talkative']}`" in card.text
    assert "demo" in card.data.tags  # its stage-1 model (read from the cache) was trained on the shipped sample
    # run_config.yaml is enough to redo the run: train.py resolves init_from at the recorded commit.
    again = tmp_path / "again"
    assert train.main(["--config", str(tmp_path / "hub/run_config.yaml"), "--output_dir", str(again), "--cpu"]) == 0
    assert all(torch.equal(from_folder[key], value) for key, value in _weights(again).items())


# ---------------------------------------------------------------------------------------------------------------------
# One-line errors, for each command


def _argv(command: str, model: list[str], tmp_path: Path) -> list[str]:
    corpus = sample_data_dir() / "BC5CDR-chem"
    (tmp_path / "text.txt").write_text(TEXT, encoding="utf-8")
    return {
        "predict": [*model, "--input", str(tmp_path / "text.txt"), "--output", str(tmp_path / "out.jsonl")],
        "finetune": [*model, "--task", "chem", "--train_file", str(corpus / "train.tsv"), "--output_dir",
                     str(tmp_path / "out")],
        "evaluate": [*model, "--data_root", str(sample_data_dir()), "--output_dir", str(tmp_path / "out"),
                     "--no_plot"],
    }[command]


@pytest.mark.parametrize("command", ["predict", "finetune", "evaluate"])
def test_a_model_that_is_neither_a_folder_nor_a_resolvable_hub_id_is_one_line(command, offline_hub, hub_cache,
                                                                              local_models, tmp_path, capsys):
    cache, _ = hub_cache
    main = {"predict": predict.main, "finetune": finetune.main, "evaluate": evaluate_model.main}[command]
    cases = [
        (["--model", "org/absent"], f"error: --model: expected a model folder or a Hub id (user/name), got "
         f"'org/absent': no such folder, and not in the Hugging Face cache {cache}, and the Hub is offline "
         f"(HF_HUB_OFFLINE is set)"),
        (["--model", REPO_ID, "--revision", "v9"], f"error: --revision: expected a revision of {REPO_ID} that the "
         f"Hugging Face cache {cache} holds, since the Hub is offline (HF_HUB_OFFLINE is set), got v9; cached: "
         f"{sorted(['main', 'talkative', *offline_hub.values()])}"),
        (["--model", str(tmp_path / "missing")], f"error: --model: expected a model folder or a Hub id (user/name), "
         f"got '{tmp_path / 'missing'}': no such folder, and not a valid Hub id ("),
        (["--model", "org/bad name!"], "error: --model: expected a model folder or a Hub id (user/name), got "
         "'org/bad name!': no such folder, and not a valid Hub id ("),
        (["--model", str(tmp_path / "text.txt")], f"error: --model: expected a model folder or a Hub id (user/name), "
         f"got the file {tmp_path / 'text.txt'}"),
        (["--model", str(local_models["main"]), "--revision", "main"], f"error: --revision: expected it with a Hub "
         f"id, got it with the local folder --model {local_models['main']}"),
    ]
    for model, message in cases:
        capsys.readouterr()
        assert main(_argv(command, model, tmp_path)) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(message), (line, message)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.jsonl").exists()


# ---------------------------------------------------------------------------------------------------------------------
# The card train.py writes


def test_train_py_folder_has_a_card_that_parses_and_round_trips_its_scores(tiny_tokenizer_dir, tmp_path):
    values = tiny_run_config(checkpointing_steps=0, max_steps=2)
    values["model"]["tokenizer"] = str(tiny_tokenizer_dir)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(values))
    assert train.main(["--config", str(tmp_path / "tiny.yaml"), "--output_dir", str(tmp_path / "out"), "--cpu"]) == 0
    card = ModelCard.load(tmp_path / "out/README.md")
    results = json.loads((tmp_path / "out/all_results.json").read_text())
    corpora = {"chem": "BC5CDR-chem", "disease": "NCBI-disease"}
    expected = {(f"{task}: the sample of {corpora[task]} shipped with hstl (100 sentences, "
                 f"{results[split][task]['num_gold']} mentions)", split, metric): results[split][task][metric]
                for split in ("validation", "test") for task in ("chem", "disease")
                for metric in ("precision", "recall", "f1")}
    found = {(result.dataset_name, result.dataset_split, result.metric_type): result.metric_value
             for result in card.data.eval_results}
    assert found == expected  # == on floats: the card carries the scores exactly
    assert ModelCard(str(card)).data.eval_results == card.data.eval_results
    assert card.data.widget and card.data.base_model is None and "demo" in card.data.tags
    for needed in ("## Intended use", "## Limitations", "**This model is a demonstration.**",
                   "its encoder was trained from scratch", "A demonstration model, trained from scratch"):
        assert needed in card.text, needed
    # Not published yet: the usage code loads the folder by a relative path (here, outside the working directory, its
    # name), never by the training machine's absolute path (publish.py writes the Hub id in its place).
    assert 'repo_id = "out"' in card.text and str(tmp_path) not in card.text


@pytest.mark.parametrize("case", ["demo_config", "scratch_on_real_corpora"])
def test_card_says_demo_for_the_shipped_sample_and_from_scratch_for_a_scratch_encoder(case, tiny_model_dir, tmp_path):
    from hstl.modelcard import build_model_card

    run_config = yaml.safe_load((REPO / "configs/demo.yaml").read_text())  # MiniLM, pretrained, on the sample
    if case == "scratch_on_real_corpora":
        run_config = yaml.safe_load((REPO / "configs/bioner-all.yaml").read_text())
        run_config["model"] = {"encoder_config": {"model_type": "xlnet"}}
    shutil.copyfile(tiny_model_dir / "config.json", tmp_path / "config.json")
    (tmp_path / "run_config.yaml").write_text(yaml.safe_dump(run_config))
    card = build_model_card(tmp_path)
    if case == "demo_config":
        assert "demo" in card.data.tags and "**This model is a demonstration.**" in card.text
        assert "its encoder started from pretrained weights" in card.text and "from scratch" not in card.text
        assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"  # the packaged encoder's Hub id
    else:
        assert "demo" not in card.data.tags and "demonstration" not in card.text
        assert "**This model's encoder was trained from scratch**" in card.text and card.data.base_model is None
