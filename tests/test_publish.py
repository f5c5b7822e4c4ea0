"""publish.py, the model card and the `hstl-ner` pipeline: the dry-run folder loads as remote code in a fresh process
where `hstl` cannot be imported, its pipeline agrees with `predict.py`, its card parses back with the exact scores and
its usage code runs; no pickle, no unsafe code; upload and error paths without touching the Hub."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

import predict
import publish
from fresh_process import run_without_hstl
from hstl.hub import PICKLE_SUFFIXES
from hstl.remote_code import AUTO_MAP, remote_code_problems
from test_evaluate_model import talkative_copy


REPO_ID = "tester/hstl-tiny"
RESULTS = {  # awkward floats: the card must carry them exactly
    "BC5CDR-chem": {"devel": {"precision": 1 / 3, "recall": 0.1 + 0.2, "f1": 2 / 7},
                    "test": {"precision": 0.5, "recall": 0.25, "f1": 1 / 3}},
    "NCBI-disease": {"test": {"precision": 0.0, "recall": 0.0, "f1": 0.0}},
}
EXPECTED_FILES = {"README.md", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                  "run_config.yaml", "results.json", "configuration_hstl.py", "entity_types_hstl.py", "labels_hstl.py",
                  "mentions_hstl.py", "modeling_hstl.py", "pipeline_hstl.py", "text_hstl.py", "windows_hstl.py"}

# Run by tests/fresh_process.py in a fresh interpreter where hstl and the top-level *_hstl modules are blocked: the
# folder's own copies must do all the work.
FRESH_PROCESS_SCRIPT = r'''
import contextlib, io, json, runpy, sys

folder, text_file, usage_file = sys.argv[1:4]
usage_stdout = io.StringIO()
with contextlib.redirect_stdout(usage_stdout):
    runpy.run_path(usage_file, run_name="__main__")

from transformers import AutoModel, pipeline

model = AutoModel.from_pretrained(folder, trust_remote_code=True)
ner = pipeline("token-classification", model=folder, trust_remote_code=True)
text = open(text_file, encoding="utf-8").read()
print(json.dumps({
    "usage_stdout": usage_stdout.getvalue(),
    "model_class": f"{type(model).__module__}.{type(model).__name__}",
    "pipeline_class": f"{type(ner).__module__}.{type(ner).__name__}",
    "entities": ner(text, merge="none"),
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
    (work / "usage.py").write_text(card_usage_code(published_dir / "README.md").replace(REPO_ID, str(published_dir)))
    return run_without_hstl(FRESH_PROCESS_SCRIPT, [str(published_dir), str(work / "text.txt"), str(work / "usage.py")],
                            work)


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
    assert config["auto_map"] == AUTO_MAP
    assert config["custom_pipelines"] == {
        "token-classification": {"impl": "pipeline_hstl.HSTLNERPipeline", "pt": ["AutoModelForTokenClassification"],
                                 "type": "text"},
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
    found = {(result.dataset_name, result.dataset_type, result.dataset_split, result.metric_type): result.metric_value
             for result in data.eval_results}
    hub_ids = {"BC5CDR-chem": "bigbio/bc5cdr", "NCBI-disease": "bigbio/ncbi_disease"}
    expected = {(corpus, hub_ids[corpus], {"devel": "validation"}.get(split, split), metric): scores[metric]
                for corpus, by_split in RESULTS.items() for split, scores in by_split.items()
                for metric in ("precision", "recall", "f1")}
    assert found == expected  # == on floats: exact
    assert all(result.task_type == "token-classification" for result in data.eval_results)
    assert all("strict" not in result.metric_name and "seqeval default mode" in result.metric_name
               for result in data.eval_results)
    for needed in ("trust_remote_code", "revision=", "10.1186/s12859-021-04551-4", "| `chem` | chemical | Chemical |",
                   "| max_length | 48 |", "pipeline_hstl.py", "| BC5CDR-chem | validation |"):
        assert needed in card.text, needed


def test_card_mentions_the_pretrained_encoder_as_base_model(tiny_model_dir):
    from hstl.modelcard import base_model_of

    assert base_model_of({"model": {"encoder": "xlnet-base-cased"}}) == "xlnet-base-cased"
    assert base_model_of({"model": {"encoder": str(tiny_model_dir)}}) is None  # a local folder is no Hub id
    assert base_model_of({"model": {"init_from": "user/hstl-stage1", "encoder": None}}) == "user/hstl-stage1"


def test_card_of_a_stage_2_folder_names_the_stage_1_encoder(tmp_path):
    from hstl.modelcard import base_model_of

    stage_1 = tmp_path / "stage1"
    stage_1.mkdir()
    (stage_1 / "run_config.yaml").write_text("model:\n  encoder: dmis-lab/biobert-base-cased-v1.2\n")
    assert base_model_of({"model": {"init_from": str(stage_1)}}) == "dmis-lab/biobert-base-cased-v1.2"


@pytest.mark.parametrize("which", ["demo", "dry_run"])
def test_card_of_a_demo_and_a_dry_run_folder_loads_with_every_field(which, tiny_model_dir, published_dir, tmp_path):
    from hstl.modelcard import EXAMPLE_TEXT, build_model_card

    if which == "demo":  # train.py's own folder (a scratch encoder, as configs/demo.yaml trains)
        build_model_card(tiny_model_dir).save(tmp_path / "README.md")
        readme = tmp_path / "README.md"
    else:
        readme = published_dir / "README.md"
    card = ModelCard.load(readme)
    data = card.data
    assert data.widget == [{"text": EXAMPLE_TEXT}]
    assert data.base_model is None  # the tiny encoder was built from scratch: there is no Hub model to point at
    assert data.datasets == ["bigbio/bc5cdr", "bigbio/ncbi_disease"]  # the sample corpora's Hub datasets
    assert data.metrics == ["seqeval"] and "demo" in data.tags
    assert {result.dataset_split for result in data.eval_results} == {"validation", "test"}
    assert "strict" not in str(data.to_dict()).lower()
    for heading in ("## Intended use", "## Limitations", "**This model is a demonstration.**",
                    "A demonstration model, trained from scratch"):
        assert heading in card.text, heading
    # Every model-index entry round-trips through the card's YAML.
    assert ModelCard(str(card)).data.eval_results == data.eval_results


def test_card_of_a_pretrained_encoder_does_not_call_itself_a_demo(tiny_model_dir, tmp_path):
    import shutil

    from hstl.modelcard import build_model_card

    folder = tmp_path / "pretrained"
    folder.mkdir()
    shutil.copyfile(tiny_model_dir / "config.json", folder / "config.json")
    (folder / "run_config.yaml").write_text("model:\n  encoder: xlnet-base-cased\ntasks: []\n")
    card = build_model_card(folder)
    assert card.data.base_model == "xlnet-base-cased" and "demo" not in card.data.tags
    assert "demonstration" not in card.text and "## Intended use" in card.text


def test_card_usage_code_runs_against_the_folder(fresh_process_output):
    printed = fresh_process_output["usage_stdout"]
    assert "['chem', 'disease'] ['chemical', 'disease']" in printed


# ---------------------------------------------------------------------------------------------------------------------
# Remote code in a fresh process, and the pipeline against predict.py


def test_fresh_process_loads_the_remote_code_without_hstl(fresh_process_output):
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
    from windows_hstl import encode_sentences
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
    all_heads = [entity for entity in ner(_sample_text(), merge="none") if entity["task"] == "chem"]
    assert [{**entity, "score": None} for entity in only_chem] == [{**entity, "score": None} for entity in all_heads]
    assert [entity["score"] for entity in only_chem] == pytest.approx([entity["score"] for entity in all_heads])
    with pytest.raises(ValueError, match=r"merge: expected one of \['confidence', 'longest', 'none'\], got 'union'"):
        ner("Aspirin.", merge="union")
    with pytest.raises(ValueError, match=r"aggregation_strategy: expected one of \['simple', 'first', 'none'\]"):
        ner("Aspirin.", aggregation_strategy="average")
    # "first" is "simple" (words are read at their first sub-token); ignore_labels drops entity types.
    assert ner(_sample_text(), aggregation_strategy="first") == ner(_sample_text())
    without_chemicals = ner(_sample_text(), merge="none", ignore_labels=["Chemical"])
    assert without_chemicals == [entity for entity in ner(_sample_text(), merge="none")
                                 if entity["entity_group"] != "Chemical"]
    assert without_chemicals and len(without_chemicals) < len(ner(_sample_text(), merge="none"))


def test_pipeline_merge_longest_keeps_no_overlap_and_prefers_longer_mentions(published_dir):
    from transformers import pipeline

    import pipeline_hstl  # noqa: F401  (registers "hstl-ner")
    from hstl.inference.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(published_dir)
    ner = pipeline("hstl-ner", model=model, tokenizer=tokenizer, device="cpu")
    everything, merged = ner(_sample_text(), merge="none"), ner(_sample_text(), merge="longest")
    assert set(map(str, merged)) < set(map(str, everything))  # a strict subset: some overlaps were resolved
    for first, second in zip(merged, merged[1:]):
        assert first["end"] <= second["start"]
    for dropped in (entity for entity in everything if str(entity) not in set(map(str, merged))):
        # each dropped mention overlaps a kept one
        assert any(kept["start"] < dropped["end"] and dropped["start"] < kept["end"] for kept in merged)


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
