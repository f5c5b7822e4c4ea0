"""publish.py, the model card and the `hstl-ner` pipeline: the dry-run folder loads as remote code in a fresh process
where `hstl` cannot be imported, its pipeline agrees with `predict.py`, its card parses back with the exact scores and
its usage code runs; no pickle, no unsafe code; upload and error paths without touching the Hub."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

import predict
import publish
from hstl.hub import PICKLE_SUFFIXES, remote_code_problems
from test_evaluate_model import talkative_copy


REPO_ID = "tester/hstl-tiny"
RESULTS = {  # awkward floats: the card must carry them exactly
    "BC5CDR-chem": {"devel": {"precision": 1 / 3, "recall": 0.1 + 0.2, "f1": 2 / 7},
                    "test": {"precision": 0.5, "recall": 0.25, "f1": 1 / 3}},
    "NCBI-disease": {"test": {"precision": 0.0, "recall": 0.0, "f1": 0.0}},
}
EXPECTED_FILES = {"README.md", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                  "run_config.yaml", "results.json", "configuration_hstl.py", "modeling_hstl.py", "pipeline_hstl.py",
                  "processing_hstl.py"}

# Run in a fresh interpreter, outside the repository: `hstl` is made unimportable before anything else happens.
FRESH_PROCESS_SCRIPT = r'''
import contextlib, importlib.abc, io, json, runpy, sys

# The package and the top-level copies of the remote-code files: the folder's own copies must do all the work.
BLOCKED = {"hstl", "configuration_hstl", "modeling_hstl", "pipeline_hstl", "processing_hstl"}

class BlockHSTL(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None

sys.meta_path.insert(0, BlockHSTL())
folder, text_file, usage_file = sys.argv[1:4]
try:
    import hstl
    hstl_blocked = False
except ModuleNotFoundError:
    hstl_blocked = True
usage_stdout = io.StringIO()
with contextlib.redirect_stdout(usage_stdout):
    runpy.run_path(usage_file, run_name="__main__")

from transformers import AutoModel, pipeline

model = AutoModel.from_pretrained(folder, trust_remote_code=True)
ner = pipeline(model=folder, trust_remote_code=True)
text = open(text_file, encoding="utf-8").read()
print(json.dumps({
    "hstl_blocked": hstl_blocked,
    "usage_stdout": usage_stdout.getvalue(),
    "model_class": f"{type(model).__module__}.{type(model).__name__}",
    "pipeline_class": f"{type(ner).__module__}.{type(ner).__name__}",
    "entities": ner(text),
    "empty": ner(""),
}))
'''


def _sample_text() -> str:
    """Paragraphs of sample sentences (words joined by spaces), one of them long enough to need several windows."""
    from hstl.data import read_split_dir, sample_data_dir

    sentences = [" ".join(sentence.tokens) for corpus in ("BC5CDR-chem", "NCBI-disease")
                 for sentence in read_split_dir(sample_data_dir() / corpus)["validation"][:6]]
    long_sentence = " ".join(sentence.rstrip(" .") for sentence in sentences[:4]) + " ."
    return "\n\n".join([" ".join(sentences[:5]), long_sentence, "E. coli and IL-2 (5-fluorouracil) rose.",
                        " ".join(sentences[5:])]) + "\n"


@pytest.fixture(scope="module")
def talkative_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    return talkative_copy(tiny_model_dir, tmp_path_factory.mktemp("talkative_model"))


@pytest.fixture(scope="module")
def published_dir(talkative_model_dir, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("publish")
    (work / "results.json").write_text(json.dumps(RESULTS))
    out = work / "repo"
    assert publish.main(["--model", str(talkative_model_dir), "--repo_id", REPO_ID, "--dry-run", str(out),
                         "--results", str(work / "results.json")]) == 0
    return out


@pytest.fixture(scope="module")
def fresh_process_output(published_dir, tmp_path_factory) -> dict:
    """What the dry-run folder gives in a fresh process without `hstl`: the card's usage code, AutoModel, pipeline."""
    work = tmp_path_factory.mktemp("fresh")
    (work / "text.txt").write_text(_sample_text(), encoding="utf-8")
    (work / "check.py").write_text(FRESH_PROCESS_SCRIPT)
    (work / "usage.py").write_text(card_usage_code(published_dir / "README.md").replace(REPO_ID, str(published_dir)))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "ACCELERATE_"))}
    env.update(HF_HOME=str(work / "hf_home"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    completed = subprocess.run(
        [sys.executable, "-I", str(work / "check.py"), str(published_dir), str(work / "text.txt"),
         str(work / "usage.py")],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def card_usage_code(readme: Path) -> str:
    """The first python code block of the card."""
    match = re.search(r"```python\n(.*?)```", readme.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert match, "the card has no python code block"
    return match.group(1)


# ---------------------------------------------------------------------------------------------------------------------
# The folder


def test_dry_run_folder_holds_exactly_the_repository_files(published_dir):
    files = {path.name for path in published_dir.iterdir()}
    assert files == EXPECTED_FILES
    assert not [path for path in published_dir.rglob("*") if path.suffix in PICKLE_SUFFIXES]
    config = json.loads((published_dir / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "configuration_hstl.HSTLConfig", "AutoModel": "modeling_hstl.HSTLModel"}
    assert config["custom_pipelines"] == {
        "hstl-ner": {"impl": "pipeline_hstl.HSTLNERPipeline", "pt": ["AutoModel"], "type": "text"}}
    assert (config["window_max_length"], config["window_overlap"]) == (48, 8)  # the tiny run's training settings
    assert "data_root" not in (published_dir / "run_config.yaml").read_text()  # a path of the training machine
    assert json.loads((published_dir / "results.json").read_text()) == RESULTS


def test_remote_code_passes_the_static_check(published_dir):
    for path in published_dir.glob("*.py"):
        assert remote_code_problems(path) == [], path.name


def test_static_check_catches_network_eval_writes_and_foreign_imports(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import os\nimport urllib.request\nfrom huggingface_hub import hf_hub_download\nfrom .data import x\n"
        "import torch\n"
        "eval('1')\nexec('x = 1')\nopen('f', 'w')\nopen('f', mode=m)\nopen('f').read()\n"
        "torch.save({}, 'f')\npath.write_text('x')\nurllib.request.urlopen('http://x')\n'a.b'.replace('.', '_')\n"
    )
    problems = "\n".join(remote_code_problems(bad, sibling_modules={"bad"}))
    for expected in ("bad.py:1: import of 'os'", "bad.py:2: import of 'urllib.request'",
                     "bad.py:3: import of 'huggingface_hub'", "bad.py:4: relative import of 'data'",
                     "bad.py:6: call of eval()", "bad.py:7: call of exec()", "bad.py:8: open() for writing",
                     "bad.py:9: open() for writing", "bad.py:11: call of torch.save()",
                     "bad.py:12: call of .write_text()", "bad.py:13: call of .urlopen()"):
        assert expected in problems
    assert "bad.py:5" not in problems and "bad.py:10" not in problems and "bad.py:14" not in problems


# ---------------------------------------------------------------------------------------------------------------------
# The card


def test_card_metadata_parses_back_with_the_exact_scores(published_dir):
    card = ModelCard.load(published_dir / "README.md")
    data = card.data
    assert data.license == "apache-2.0" and data.pipeline_tag == "token-classification"
    assert data.library_name == "transformers"
    assert set(data.tags) >= {"bioner", "ner", "token-classification", "hstl", "biomedical"}
    assert data.base_model is None  # the tiny encoder was built from scratch: there is no Hub model to point at
    found = {(result.dataset_name, result.dataset_split, result.metric_type): result.metric_value
             for result in data.eval_results}
    expected = {(corpus, split, metric): scores[metric] for corpus, by_split in RESULTS.items()
                for split, scores in by_split.items() for metric in ("precision", "recall", "f1")}
    assert found == expected  # == on floats: exact
    assert all(result.task_type == "token-classification" for result in data.eval_results)
    for needed in ("trust_remote_code", "revision=", "10.1186/s12859-021-04551-4", "| `chem` | chemical | Chemical |",
                   "| max_length | 48 |", "pipeline_hstl.py"):
        assert needed in card.text, needed


def test_card_mentions_the_pretrained_encoder_as_base_model(tiny_model_dir):
    from hstl.modelcard import base_model_of

    assert base_model_of({"model": {"encoder": "xlnet-base-cased"}}) == "xlnet-base-cased"
    assert base_model_of({"model": {"encoder": str(tiny_model_dir)}}) is None  # a local folder is no Hub id
    assert base_model_of({"model": {"init_from": "user/hstl-stage1", "encoder": None}}) == "user/hstl-stage1"


def test_card_usage_code_runs_against_the_folder(fresh_process_output):
    printed = fresh_process_output["usage_stdout"]
    assert "['chem', 'disease'] ['chemical', 'disease']" in printed


# ---------------------------------------------------------------------------------------------------------------------
# Remote code in a fresh process, and the pipeline against predict.py


def test_fresh_process_loads_the_remote_code_without_hstl(fresh_process_output):
    assert fresh_process_output["hstl_blocked"]
    assert fresh_process_output["model_class"].startswith("transformers_modules.")
    assert fresh_process_output["model_class"].endswith("modeling_hstl.HSTLModel")
    assert fresh_process_output["pipeline_class"].endswith("pipeline_hstl.HSTLNERPipeline")
    assert fresh_process_output["empty"] == []


def test_pipeline_entities_equal_predict_py_on_text(fresh_process_output, published_dir, tmp_path):
    text = _sample_text()
    (tmp_path / "input.txt").write_text(text, encoding="utf-8")
    assert predict.main(["--model", str(published_dir), "--input", str(tmp_path / "input.txt"), "--output",
                         str(tmp_path / "out.jsonl"), "--merge", "none", "--cpu"]) == 0
    predicted = [(entity["task"], entity["type"], entity["start"], entity["end"])
                 for line in (tmp_path / "out.jsonl").read_text().splitlines()
                 for entity in json.loads(line)["entities"]]
    entities = fresh_process_output["entities"]
    assert len(entities) > 10, "the talkative model should find mentions"
    found = [(entity["task"], entity["entity_group"], entity["start"], entity["end"]) for entity in entities]
    assert found == predicted
    for entity in entities:
        assert entity["word"] == text[entity["start"]:entity["end"]]
        assert 0.0 < entity["score"] <= 1.0


def test_sample_text_has_a_sentence_longer_than_one_window(published_dir):
    from processing_hstl import encode_sentences
    from pipeline_hstl import words_of_sentences
    from hstl.inference.loading import load_model_and_tokenizer

    sentences = words_of_sentences(_sample_text())
    _, tokenizer = load_model_and_tokenizer(published_dir)
    rows = encode_sentences(tokenizer, [[word for word, _, _ in s] for s in sentences], max_length=48, overlap=8)
    assert len(rows["input_ids"]) > len(sentences)  # so the comparison above covers windowing and stitching


def test_pipeline_arguments_are_checked(published_dir):
    from transformers import pipeline

    import pipeline_hstl  # noqa: F401  (importing registers the "hstl-ner" task for in-process use)
    from hstl.inference.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(published_dir)
    ner = pipeline("hstl-ner", model=model, tokenizer=tokenizer, device="cpu")
    with pytest.raises(ValueError, match=r"unknown task 'gene'; known tasks: \['chem', 'disease'\]"):
        ner("Aspirin.", tasks=["gene"])
    with pytest.raises(ValueError, match="batch_size: expected 1"):
        ner(["Aspirin.", "Ibuprofen."], batch_size=2)
    with pytest.raises(ValueError, match=r"expected the arguments tasks, .*, got \['task'\]"):
        ner("Aspirin.", task="chem")
    with pytest.raises(ValueError, match="inputs: expected a string"):
        ner([3])
    assert ner(["   ", "\n\n"]) == [[], []]
    only_chem = ner(_sample_text(), tasks="chem", window_batch_size=5)
    assert only_chem and {entity["task"] for entity in only_chem} == {"chem"}
    # 5 windows per batch instead of 32 change padding, hence the last bits of the scores, not the entities.
    all_heads = [entity for entity in ner(_sample_text()) if entity["task"] == "chem"]
    assert [{**entity, "score": None} for entity in only_chem] == [{**entity, "score": None} for entity in all_heads]
    assert [entity["score"] for entity in only_chem] == pytest.approx([entity["score"] for entity in all_heads])


# ---------------------------------------------------------------------------------------------------------------------
# Uploading and errors


def test_upload_sends_the_assembled_folder_and_cleans_up(talkative_model_dir, published_dir, monkeypatch, capsys):
    import hstl.hub

    uploads = []

    def fake_push(folder, repo_id, *, token=None, private=False, commit_message=""):
        uploads.append(({path.name for path in Path(folder).iterdir()}, repo_id, token, private, Path(folder)))
        return f"https://huggingface.co/{repo_id}/commit/0"

    monkeypatch.setattr(hstl.hub, "push_model_folder", fake_push)
    assert publish.main(["--model", str(talkative_model_dir), "--repo_id", REPO_ID, "--private", "--token", "t"]) == 0
    (files, repo_id, token, private, folder), = uploads
    assert files == EXPECTED_FILES - {"results.json"} and (repo_id, token, private) == (REPO_ID, "t", True)
    assert not folder.exists()
    assert f"Published {REPO_ID}" in capsys.readouterr().out


def test_publish_errors_are_one_line(talkative_model_dir, tmp_path, capsys):
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text(json.dumps({"model_type": "hstl"}))
    (pickled / "pytorch_model.bin").write_bytes(b"not really")
    cases = [
        (["--model", str(pickled), "--dry-run", str(tmp_path / "a")], "expected safetensors weights"),
        (["--model", str(talkative_model_dir), "--dry-run", str(pickled)], "expected a new or empty folder"),
        (["--model", str(talkative_model_dir), "--dry-run", str(tmp_path / "b"), "--results",
          str(tmp_path / "none.json")], "none.json: expected a results.json"),
    ]
    for argv, message in cases:
        assert publish.run_cli(lambda: publish.main([*argv, "--repo_id", REPO_ID])) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("error: ") and message in error and "\n" not in error, error
    assert not (tmp_path / "a").exists()
    with pytest.raises(SystemExit):
        publish.main(["--model", str(talkative_model_dir), "--repo_id", "no-slash", "--dry-run", str(tmp_path / "c")])
    assert "--repo_id: expected user/name" in capsys.readouterr().err
