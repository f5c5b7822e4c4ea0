"""A model card states only what was measured: a sample's scores as the sample's, with sizes; Hub dataset ids only for
full corpora (and only real ones); the training data of a stage-2 model as it was; one head as "1 head"; and a head
whose label type the defaults do not know typed by its `--family`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from configuration_hstl import HSTLConfig
from hstl.modelcard import build_model_card

SCORES = {"precision": 1.0, "recall": 1.0, "f1": 1.0, "num_gold": 7, "num_sentences": 12}


def _folder(tmp_path: Path, tiny_model_dir: Path, name: str, run_config: dict, results: dict,
            keep_tasks: list[str] | None = None) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    config = json.loads((tiny_model_dir / "config.json").read_text())
    if keep_tasks is not None:
        config["tasks"] = [task for task in config["tasks"] if task["name"] in keep_tasks]
        config["entity_types"] = {name: types for name, types in config["entity_types"].items() if name in keep_tasks}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "run_config.yaml").write_text(yaml.safe_dump(run_config))
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_a_full_corpus_run_names_hub_datasets_only_where_they_exist(tiny_model_dir, tmp_path):
    run_config = {"model": {"encoder": "xlnet-base-cased"},
                  "tasks": [{"name": "chem", "family": "chemical", "data_dir": "bioner/BC5CDR-chem"},
                            {"name": "disease", "family": "gene/protein", "data_dir": "bioner/BC2GM"}]}
    folder = _folder(tmp_path, tiny_model_dir, "full", run_config, {"chem": {"test": SCORES},
                                                                    "disease": {"test": SCORES}})
    card = build_model_card(folder, "user/full")
    assert card.data.datasets == ["bigbio/bc5cdr"]  # BC2GM has no Hub dataset: not listed
    types = {result.dataset_name: result.dataset_type for result in card.data.eval_results}
    assert types == {"chem": "bigbio/bc5cdr", "disease": "BC2GM"}
    assert "| chem | BC5CDR-chem | test | 12 sentences, 7 mentions | 1.0000 | 1.0000 | 1.0000 |" in card.text
    assert "Its `logits` are log CRF marginals, at each word's first sub-token" in card.text  # what logits hold


def test_a_stage_2_card_names_its_own_data_and_its_demo_origin(tiny_model_dir, tmp_path):
    stage_1 = tmp_path / "stage1"
    stage_1.mkdir()
    (stage_1 / "run_config.yaml").write_text(yaml.safe_dump(
        {"model": {"encoder": "xlnet-base-cased"},
         "tasks": [{"name": "chem", "family": "chemical", "data_dir": "sample:BC5CDR-chem"}]}))
    run_config = {"model": {"init_from": str(stage_1)},
                  "tasks": [{"name": "chem", "family": "chemical", "train_file": "/data/s800/train.tsv"}]}
    folder = _folder(tmp_path, tiny_model_dir, "stage2", run_config, {"chem": {"test": SCORES}},
                     keep_tasks=["chem"])
    card = build_model_card(folder, "user/stage2")
    assert "It was trained on the small sample" not in card.text
    assert "on the sample shipped with `hstl`: not for real use" not in card.text
    assert "**This model was fine-tuned from a demonstration model.**" in card.text
    assert "fine-tuned on `train.tsv`" in card.text
    assert "| chem | chem | test | 12 sentences, 7 mentions | 1.0000 | 1.0000 | 1.0000 |" in card.text
    assert card.data.datasets is None  # s800 was read from a file: no Hub dataset claimed
    assert "A biomedical named entity recognition model with 1 corpus-specific head on" in card.text
    assert "It has 1 head in 1 entity family." in card.text


def test_a_head_of_an_unknown_label_type_takes_its_familys_entity_type(tiny_model_dir, tmp_path):
    config = HSTLConfig(tasks=[{"name": "s800", "labels": ["O", "B-NCBITaxon", "I-NCBITaxon"], "family": "species"},
                               {"name": "mixed", "labels": ["O", "B-NCBITaxon", "I-NCBITaxon"], "family": "mixed"},
                               {"name": "two", "labels": ["O", "B-Foo", "I-Foo", "B-Bar", "I-Bar"],
                                "family": "species"}])
    assert config.entity_types == {"s800": {"NCBITaxon": "Species"}, "mixed": {"NCBITaxon": "NCBITaxon"},
                                   "two": {"Foo": "Foo", "Bar": "Bar"}}  # several unknown types: kept
    assert "B-Species" in config.label2id
    config.add_task("taxa", ["O", "B-Taxon", "I-Taxon"], "species")  # as finetune.py --family species adds a head
    assert config.entity_types["taxa"] == {"Taxon": "Species"}
    folder = tmp_path / "species"
    config.save_pretrained(folder)
    card = build_model_card(folder, "user/species")
    assert "| `s800` | NCBITaxon | Species |" in card.text and "| `taxa` | Taxon | Species |" in card.text
    shutil.rmtree(folder)
