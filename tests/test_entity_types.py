"""Shared entity types (issue 12): the default mapping of the corpora's label types, `HSTLConfig.entity_types` (saved,
overridable from a run config, shown in the card), outputs typed by it, and `predict.py --entity_types`."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml

import predict
from conftest import tiny_run_config
from test_evaluate_model import talkative_copy

from configuration_hstl import HSTLConfig
from modeling_hstl import HSTLForTokenClassification
from entity_types_hstl import DEFAULT_ENTITY_TYPES, to_entity_labels
from hstl.remote_code import GROUP_MODULES
from labels_hstl import entity_types

TEXT = ("Cisplatin-induced nephrotoxicity and naloxone-induced hypertension were seen in rats.\n\n"
        "Lithium carbonate caused diabetes insipidus and renal failure in two patients with bipolar disorder.\n")

SAMPLE_TYPES = {"BC2GM": {"GENE": "Gene"}, "BC5CDR-chem": {"Chemical": "Chemical"},
                "BC5CDR-disease": {"Disease": "Disease"}, "NCBI-disease": {"Disease": "Disease"},
                "linnaeus": {"Species": "Species"}}
"""The shipped sample corpora, their label types and the shared types these must get (written out by hand)."""


def _task(name: str, types: list[str], family: str = "f") -> dict:
    return {"name": name, "labels": ["O", *(f"{tag}-{t}" for t in types for tag in "BI")], "family": family}


# ---------------------------------------------------------------------------------------------------------------------
# The default mapping


def test_default_mapping_of_the_shipped_sample_corpora():
    from hstl.data import read_split_dir, sample_data_dir

    tasks = []
    for corpus in SAMPLE_TYPES:
        labels = sorted({label for sentence in read_split_dir(sample_data_dir() / corpus)["train"]
                         for label in sentence.labels})
        tasks.append({"name": corpus, "labels": labels, "family": "f"})
    config = HSTLConfig(tasks=tasks)
    assert config.entity_types == SAMPLE_TYPES
    assert list(config.id2label.values()) == ["O", "B-Gene", "I-Gene", "B-Chemical", "I-Chemical", "B-Disease",
                                              "I-Disease", "B-Species", "I-Species"]


@pytest.mark.corpora
def test_every_label_type_of_the_bioner_corpora_has_a_default(bioner_dir):
    label_types = set()
    for corpus_dir in sorted(path for path in bioner_dir.iterdir() if path.is_dir()):
        with open(corpus_dir / "devel.tsv", encoding="utf-8") as handle:
            labels = {line.rstrip("\n").split("\t")[-1] for line in handle if "\t" in line}
        label_types.update(entity_types(labels))
    assert len(label_types) >= 20  # the 13 corpora's 30 label types (fewer if some corpora are absent)
    assert label_types <= set(DEFAULT_ENTITY_TYPES), sorted(label_types - set(DEFAULT_ENTITY_TYPES))
    expected = {"GENE": "Gene", "Protein": "Gene", "protein": "Gene", "DNA": "Gene", "RNA": "Gene",
                "Gene_or_gene_product": "Gene", "Organism": "Species", "Simple_chemical": "Chemical",
                "cell_line": "CellLine", "cell_type": "CellType", "Cancer": "Disease"}
    assert {key: DEFAULT_ENTITY_TYPES[key] for key in expected if key in label_types} == \
        {key: value for key, value in expected.items() if key in label_types}


# ---------------------------------------------------------------------------------------------------------------------
# HSTLConfig.entity_types


def test_config_entity_types_are_overridable_saved_and_follow_the_tasks(tmp_path):
    jnlpba = _task("JNLPBA", ["protein", "DNA", "cell_line"])
    config = HSTLConfig(tasks=[jnlpba, _task("mine", ["Widget"])], entity_types={"JNLPBA": {"DNA": "DNA"}})
    assert config.entity_types == {"JNLPBA": {"DNA": "DNA", "cell_line": "CellLine", "protein": "Gene"},
                                   "mine": {"Widget": "Widget"}}  # an unknown type stays what it is
    assert list(config.id2label.values()) == ["O", "B-Gene", "I-Gene", "B-DNA", "I-DNA", "B-CellLine", "I-CellLine",
                                              "B-Widget", "I-Widget"]
    config.add_task("BioNLP09", ["O", "B-Protein", "I-Protein"], "gene")
    assert config.entity_types["BioNLP09"] == {"Protein": "Gene"}
    config.update_entity_types({"mine": {"Widget": "Device"}})
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["entity_types"]["mine"] == {"Widget": "Device"} and saved["entity_types"]["JNLPBA"]["DNA"] == "DNA"
    assert "B-Device" in saved["label2id"] and "B-Widget" not in saved["label2id"]
    saved["entity_types"]["BioNLP09"]["Protein"] = "Protein"  # edited by hand in config.json
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = HSTLConfig.from_pretrained(tmp_path)
    assert loaded.entity_types["BioNLP09"] == {"Protein": "Protein"} and "B-Protein" in loaded.label2id
    loaded.tasks = loaded.tasks[1:]  # as keep_tasks does
    assert set(loaded.entity_types) == {"mine", "BioNLP09"}


@pytest.mark.parametrize("entity_types, message", [
    ({"nope": {"Chemical": "Chemical"}}, r"entity_types: expected task names among \['chem'\], got \['nope'\]"),
    ({"chem": {"Drug": "Chemical"}}, r"entity_types\['chem'\]: expected label types of the task \['Chemical'\]"),
    ({"chem": {"Chemical": "Small molecule"}}, r"entity_types\['chem'\]\['Chemical'\]: expected an entity type name"),
    ({"chem": "Chemical"}, r"entity_types\['chem'\]: expected a mapping"),
])
def test_config_rejects_bad_entity_types(entity_types, message):
    with pytest.raises(ValueError, match=message):
        HSTLConfig(tasks=[_task("chem", ["Chemical"])], entity_types=entity_types)


def test_a_folder_saved_before_entity_types_loads_with_the_defaults(tmp_path):
    config = HSTLConfig(tasks=[_task("BC2GM", ["GENE"])])
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["entity_types"]
    saved["id2label"] = {"0": "O", "1": "B-GENE", "2": "I-GENE"}  # the merged labels as they were saved then
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = HSTLConfig.from_pretrained(tmp_path)
    assert loaded.entity_types == {"BC2GM": {"GENE": "Gene"}}
    assert loaded.id2label == {0: "O", 1: "B-Gene", 2: "I-Gene"}


def test_to_entity_labels_keeps_the_mentions_of_types_that_merge():
    jnlpba = {"DNA": "Gene", "protein": "Gene", "cell_line": "CellLine"}
    labels = ["B-DNA", "I-DNA", "I-protein", "O", "I-protein", "I-cell_line", "B-protein"]
    assert to_entity_labels(labels, jnlpba) == ["B-Gene", "I-Gene", "B-Gene", "O", "I-Gene", "I-CellLine", "B-Gene"]


def test_logits_take_the_best_label_type_of_a_shared_entity_type():
    encoder = {"model_type": "bert", "vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 1,
               "num_attention_heads": 2, "intermediate_size": 37}
    torch.manual_seed(0)
    config = HSTLConfig(encoder_config=encoder, tasks=[_task("JNLPBA", ["protein", "DNA", "cell_line"])])
    model = HSTLForTokenClassification(config).eval()
    with torch.no_grad():  # loud emissions, so that the label types' log-probabilities differ clearly
        model.hstl.heads["JNLPBA"].emission.weight.normal_(std=1.0)
    input_ids = torch.randint(5, 99, (2, 7))
    logits = model(input_ids).logits
    tagged = model.tag(input_ids, torch.arange(7).expand(2, 7), torch.ones_like(input_ids))
    # JNLPBA's labels: O, B-protein, I-protein, B-DNA, I-DNA, B-cell_line, I-cell_line.
    jnlpba = tagged.emissions["JNLPBA"].log_softmax(-1)
    assert (jnlpba[..., 1] > jnlpba[..., 3]).any() and (jnlpba[..., 1] < jnlpba[..., 3]).any()  # both win somewhere
    assert list(model.config.id2label.values()) == ["O", "B-Gene", "I-Gene", "B-CellLine", "I-CellLine"]
    torch.testing.assert_close(logits[..., 1], torch.maximum(jnlpba[..., 1], jnlpba[..., 3]))
    torch.testing.assert_close(logits[..., 2], torch.maximum(jnlpba[..., 2], jnlpba[..., 4]))
    torch.testing.assert_close(logits[..., 4], jnlpba[..., 6])


# ---------------------------------------------------------------------------------------------------------------------
# A run config's override reaches config.json and the card


def _write_run_config(folder: Path, tokenizer_dir: Path, entity_types) -> Path:
    values = tiny_run_config(max_steps=1, checkpointing_steps=0)
    values["model"]["tokenizer"] = str(tokenizer_dir)
    values["model"]["entity_types"] = entity_types
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_run_config_override_reaches_config_json_and_the_card(tmp_path, tiny_tokenizer_dir):
    from hstl.commands import train
    from hstl.modelcard import build_model_card

    config_path = _write_run_config(tmp_path, tiny_tokenizer_dir, {"chem": {"Chemical": "Drug"}})
    assert train.main(["--config", str(config_path), "--output_dir", str(tmp_path / "run"), "--cpu"]) == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["entity_types"] == {"chem": {"Chemical": "Drug"}, "disease": {"Disease": "Disease"}}
    assert list(saved["id2label"].values()) == ["O", "B-Drug", "I-Drug", "B-Disease", "I-Disease"]
    card = str(build_model_card(tmp_path / "run"))
    assert "| `chem` | Chemical | Drug |" in card and "| `disease` | Disease | Disease |" in card


def test_finetune_takes_the_targets_entity_types_from_its_config(tmp_path, tiny_model_dir, tiny_tokenizer_dir):
    import finetune

    config_path = _write_run_config(tmp_path, tiny_tokenizer_dir, {"disease": {"Disease": "Illness"}})
    argv = ["--model", str(tiny_model_dir), "--config", str(config_path), "--tasks", "disease", "--output_dir",
            str(tmp_path / "out"), "--max_steps", "1", "--eval_steps", "0", "--checkpointing_steps", "0", "--cpu"]
    assert finetune.main(argv) == 0
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["entity_types"] == {"disease": {"Disease": "Illness"}}
    assert list(saved["id2label"].values()) == ["O", "B-Illness", "I-Illness"]


@pytest.mark.parametrize("entity_types, message", [
    ({"chem": {"Drug": "Chemical"}},
     r"run.yaml: model.entity_types\['chem'\]: expected label types of the task \['Chemical'\], got \['Drug'\]"),
    ({"species": {"Species": "Organism"}},
     r"run.yaml: model.entity_types: expected task names of the config's tasks \['chem', 'disease'\]"),
    ({"chem": {"Chemical": ["Drug"]}}, r"run.yaml: model.entity_types.chem: expected a mapping label type"),
])
def test_run_config_override_errors_name_the_key(tmp_path, tiny_tokenizer_dir, capsys, entity_types, message):
    from hstl.commands import train

    config_path = _write_run_config(tmp_path, tiny_tokenizer_dir, entity_types)
    assert train.main(["--config", str(config_path), "--output_dir", str(tmp_path / "run"), "--cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert re.search(message, err[0]), err[0]


# ---------------------------------------------------------------------------------------------------------------------
# predict.py --entity_types and the pipeline's entity_types


@pytest.fixture(scope="module")
def typed_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A talkative copy of the tiny model (heads chem and disease) whose config.json maps Disease to Illness by hand."""
    folder = talkative_copy(tiny_model_dir, tmp_path_factory.mktemp("typed_model"))
    for name in GROUP_MODULES:
        shutil.copy(tiny_model_dir / f"{name}.py", folder / f"{name}.py")
    config = json.loads((folder / "config.json").read_text())
    config["entity_types"]["disease"] = {"Disease": "Illness"}  # id2label is left as it was: it is derived again
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _entities(folder: Path, tmp_path: Path, *options: str) -> list[dict]:
    """The entities of predict.py's JSON Lines for TEXT, with `options`."""
    (tmp_path / "input.txt").write_text(TEXT, encoding="utf-8")
    output = tmp_path / f"out-{'-'.join(options)}.jsonl"
    argv = ["--model", str(folder), "--input", str(tmp_path / "input.txt"), "--output", str(output), "--cpu"]
    assert predict.main([*argv, *options]) == 0
    return [entity for line in output.read_text().splitlines() for entity in json.loads(line)["entities"]]


def test_predict_entity_types_keeps_those_types_and_runs_only_their_heads(typed_model_dir, tmp_path, capsys):
    every_head = _entities(typed_model_dir, tmp_path, "--merge", "none")
    assert {(entity["task"], entity["type"], entity["label_type"]) for entity in every_head} == \
        {("chem", "Chemical", "Chemical"), ("disease", "Illness", "Disease")}
    merged = _entities(typed_model_dir, tmp_path, "--merge", "longest")
    capsys.readouterr()
    illnesses = _entities(typed_model_dir, tmp_path, "--entity_types", "Illness")
    assert "with ['disease']" in capsys.readouterr().out  # the chem head did not run
    disease_head_alone = _entities(typed_model_dir, tmp_path, "--tasks", "disease")
    assert illnesses == disease_head_alone and illnesses
    # Selected before merging: the Illness mentions that longer Chemical ones hide in the merged output are kept.
    merged_illnesses = [entity for entity in merged if entity["type"] == "Illness"]
    assert all(entity in illnesses for entity in merged_illnesses) and len(merged_illnesses) < len(illnesses)


def test_predict_entity_types_in_conll_output(typed_model_dir, tmp_path):
    conll = tmp_path / "in.tsv"
    conll.write_text("".join(f"{word}\tO\n" for word in TEXT.split()) + "\n", encoding="utf-8")
    output = tmp_path / "out.tsv"
    argv = ["--model", str(typed_model_dir), "--input", str(conll), "--output", str(output), "--cpu"]
    assert predict.main([*argv, "--entity_types", "Chemical"]) == 0
    labels = {line.split("\t")[1] for line in output.read_text().splitlines() if line}
    assert "B-Chemical" in labels and labels <= {"O", "B-Chemical", "I-Chemical"}
    assert predict.main([*argv, "--merge", "none"]) == 0  # one column per head: chem's, then disease's
    columns = [line.split("\t")[1:] for line in output.read_text().splitlines() if line]
    assert "B-Illness" in {column[1] for column in columns} and "B-Disease" not in output.read_text()


def test_predict_entity_types_nobody_produces_is_one_line_naming_the_argument(typed_model_dir, tmp_path, capsys):
    (tmp_path / "input.txt").write_text(TEXT, encoding="utf-8")
    argv = ["--model", str(typed_model_dir), "--input", str(tmp_path / "input.txt"), "--output",
            str(tmp_path / "out.jsonl"), "--cpu"]
    assert predict.main([*argv, "--entity_types", "Illness", "Species"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --entity_types: expected entity types that the heads ['chem', 'disease'] produce "
                   "(Chemical, Illness), got ['Species']"]
    assert predict.main([*argv, "--tasks", "chem", "--entity_types", "Illness"]) == 2
    assert capsys.readouterr().err.strip() == ("error: --entity_types: expected entity types that the heads ['chem'] "
                                               "produce (Chemical), got ['Illness']")
    assert not (tmp_path / "out.jsonl").exists()


def test_pipeline_entity_types(typed_model_dir, tmp_path):
    from transformers import pipeline

    from hstl.inference.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(typed_model_dir)
    ner = pipeline("hstl-ner", model=model, tokenizer=tokenizer, device="cpu")
    found = [(e["task"], e["entity_group"], e["start"], e["end"]) for e in ner(TEXT, entity_types=["Illness"])]
    expected = [(entity["task"], entity["type"], entity["start"], entity["end"])
                for entity in _entities(typed_model_dir, tmp_path, "--entity_types", "Illness")]
    assert found == expected and found
    assert {entity["entity_group"] for entity in ner(TEXT, merge="none")} == {"Chemical", "Illness"}
    # Both heads run (as for a head with several label types): postprocess drops the types not asked for.
    with torch.no_grad():
        tagged = ner._forward(ner.preprocess(TEXT), tasks=["chem", "disease"])
    kept = ner.postprocess(tagged, entity_types=["Illness"])
    assert kept and {(entity["task"], entity["entity_group"]) for entity in kept} == {("disease", "Illness")}
    with pytest.raises(ValueError, match=r"entity_types: expected entity types that the heads \['chem', 'disease'\] "
                                         r"produce \(Chemical, Illness\), got \['Disease'\]"):
        ner(TEXT, entity_types=["Disease"])


def test_tag_units_drops_the_unwanted_types_of_the_heads_it_runs(typed_model_dir, tmp_path):
    from hstl.formats import FORMATS
    from hstl.formats.text import iter_text_sentences
    from hstl.inference.loading import WindowSettings, load_model_and_tokenizer
    from hstl.inference.streaming import tag_units

    model, tokenizer = load_model_and_tokenizer(typed_model_dir)
    (tmp_path / "input.txt").write_text(TEXT, encoding="utf-8")
    units = list(iter_text_sentences(tmp_path / "input.txt"))
    settings = WindowSettings(max_length=32, overlap=4, batch_size=8)

    def entities(**types) -> list[dict]:
        rendered = tag_units(model, tokenizer, units, FORMATS["text"], ["chem", "disease"], settings, "longest",
                             entity_type_of=model.config.entity_types, **types)
        return [entity for line in rendered.splitlines() for entity in json.loads(line)["entities"]]

    assert {entity["type"] for entity in entities()} == {"Chemical"}  # the chem head's longer mentions win every merge
    illnesses = entities(entity_types=["Illness"])  # both heads ran: the chem head's mentions are dropped
    assert illnesses and {(entity["task"], entity["type"], entity["label_type"]) for entity in illnesses} == \
        {("disease", "Illness", "Disease")}
