"""The routes a Hugging Face user takes with a model folder, each in a fresh process where hstl cannot be imported:
every pipeline task name that means token classification ("ner" included) gives HSTL's pipeline; a folder saved by
`model.save_pretrained`, by the pipeline's `save_pretrained` or pushed with `push_to_hub` (the upload intercepted, no
network) keeps the whole remote-code group and every pipeline entry; the pipeline takes `batch_size`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fresh_process import run_without_hstl
from test_evaluate_model import talkative_copy
from test_publish import _sample_text

FRESH_SCRIPT = r'''
import json, shutil, sys
from pathlib import Path

import transformers.utils.hub as transformers_hub
from huggingface_hub import HfApi, ModelCard, ModelCardData
from transformers import AutoModel, AutoModelForTokenClassification, AutoTokenizer, pipeline
from transformers.pipelines import PIPELINE_REGISTRY

folder, text_file, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
text = open(text_file, encoding="utf-8").read()
texts = [paragraph for paragraph in text.split("\n\n") if paragraph.strip()]
report = {"aliases": sorted(alias for alias, task in PIPELINE_REGISTRY.task_aliases.items()
                            if task == "token-classification")}

def spans(entities):
    return [(entity["task"], entity["entity_group"], entity["start"], entity["end"]) for entity in entities]

def describe(saved):
    """What a saved folder holds, and what `pipeline(name, ...)` gives on it for each token-classification name."""
    config = json.loads((saved / "config.json").read_text())
    routes = {}
    for task in ["token-classification", *report["aliases"], "hstl-ner"]:
        ner = pipeline(task, model=str(saved), trust_remote_code=True)
        routes[task] = {"class": type(ner).__name__, "spans": spans(ner(text))}
    return {"code": sorted(path.name for path in saved.glob("*.py")),
            "custom_pipelines": config.get("custom_pipelines"), "auto_map": config.get("auto_map"),
            "routes": routes}

report["folder"] = describe(Path(folder))

# A model's save_pretrained writes no tokenizer: the user saves it beside the model, as with any model.
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
classifier = AutoModelForTokenClassification.from_pretrained(folder, trust_remote_code=True)
classifier.save_pretrained(work / "classifier_saved")
tokenizer.save_pretrained(work / "classifier_saved")
report["classifier_saved"] = describe(work / "classifier_saved")
AutoModel.from_pretrained(folder, trust_remote_code=True).save_pretrained(work / "model_saved")
tokenizer.save_pretrained(work / "model_saved")
report["model_saved"] = describe(work / "model_saved")

ner = pipeline("token-classification", model=folder, trust_remote_code=True)
ner.save_pretrained(work / "pipeline_saved")
report["pipeline_saved"] = describe(work / "pipeline_saved")

# push_to_hub with the Hub intercepted: the files a commit would upload land in a folder.
pushed = work / "pushed"
class FakeRepo:
    repo_id = "org/pushed"
def create_repo(self, repo_id, **kwargs):
    return FakeRepo()
def create_commit(self, repo_id, operations, **kwargs):
    pushed.mkdir(exist_ok=True)
    for operation in operations:
        shutil.copyfile(operation.path_or_fileobj, pushed / operation.path_in_repo)
    return "commit-url"
HfApi.create_repo, HfApi.create_commit = create_repo, create_commit
transformers_hub.create_and_tag_model_card = lambda *args, **kwargs: ModelCard.from_template(ModelCardData())
classifier.push_to_hub("org/pushed")
tokenizer.push_to_hub("org/pushed")
report["pushed"] = describe(pushed)

# batch_size: windows of several texts per forward pass; the same entities as one text at a time.
forward_batches = []
tag = ner.model.tag
def counting_tag(input_ids, *args, **kwargs):
    forward_batches.append(input_ids.shape[0])
    return tag(input_ids, *args, **kwargs)
ner.model.tag = counting_tag
one_by_one = [spans(ner(paragraph)) for paragraph in texts]
forward_batches.clear()
report["batched"] = [spans(entities) for entities in ner(texts, batch_size=64)]
report["batched_forward_sizes"] = list(forward_batches)
forward_batches.clear()
report["batched_by_two"] = [spans(entities) for entities in ner(texts, batch_size=2)]
report["by_two_forward_sizes"] = list(forward_batches)
report["one_by_one"] = one_by_one
report["num_texts"] = len(texts)
try:
    ner(texts, batch_size=0)
except ValueError as error:
    report["batch_size_zero"] = str(error)
print(json.dumps(report))
'''


@pytest.fixture(scope="module")
def source_folder(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with loud heads (many mentions), completed as train.py completes a model folder."""
    from hstl.remote_code import complete_model_folder

    folder = talkative_copy(tiny_model_dir, tmp_path_factory.mktemp("routes_source"))
    complete_model_folder(folder)
    return folder


@pytest.fixture(scope="module")
def fresh(source_folder, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("routes")
    (work / "text.txt").write_text(_sample_text(), encoding="utf-8")
    return run_without_hstl(FRESH_SCRIPT, [str(source_folder), str(work / "text.txt"), str(work)], work)


def _group_files() -> list[str]:
    from hstl.remote_code import remote_code_files

    return sorted(path.name for path in remote_code_files())


def test_every_token_classification_name_gives_hstls_pipeline(fresh):
    assert "ner" in fresh["aliases"]
    routes = fresh["folder"]["routes"]
    assert set(routes) == {"token-classification", *fresh["aliases"], "hstl-ner"}
    expected = routes["hstl-ner"]["spans"]
    assert len(expected) > 10
    for task, route in routes.items():
        assert route == {"class": "HSTLNERPipeline", "spans": expected}, task


@pytest.mark.parametrize("saved", ["classifier_saved", "model_saved", "pipeline_saved", "pushed"])
def test_saving_keeps_the_remote_code_group_and_every_pipeline(fresh, saved, source_folder):
    source = json.loads((source_folder / "config.json").read_text())
    report = fresh[saved]
    assert report["code"] == _group_files()
    assert report["custom_pipelines"] == source["custom_pipelines"]
    assert report["auto_map"] == source["auto_map"]
    assert report["routes"] == fresh["folder"]["routes"]


def test_pipeline_batches_the_windows_of_several_texts(fresh):
    assert fresh["num_texts"] >= 3
    assert fresh["batched"] == fresh["one_by_one"] == fresh["batched_by_two"]
    # One forward pass for every window of every text (more windows than texts: one text is long).
    assert len(fresh["batched_forward_sizes"]) == 1 and fresh["batched_forward_sizes"][0] > fresh["num_texts"]
    assert max(fresh["by_two_forward_sizes"]) == 2
    assert sum(fresh["by_two_forward_sizes"]) == fresh["batched_forward_sizes"][0]
    assert fresh["batch_size_zero"].startswith("batch_size: expected an int >= 1")
