"""The corpora of a run: every task's sentences per split, read as its run config says (a corpus folder, files, or a
Hugging Face dataset), capped where the config caps them, with the task's label list.

Training and evaluation both read corpora through `load_task_data`. Light on purpose: reading TSV corpora imports
neither torch nor Accelerate (`datasets` only for a task that names an `hf_dataset`).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

from labels_hstl import entity_types, split_label

from .data import Sentence, label_list_from, load_hf_token_dataset, read_conll, read_split_dir, split_files
from .errors import CorpusFormatError, RunConfigError
from .run_config import RunConfig, TaskSpec


logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
"""The split names a run uses everywhere it writes, as Hugging Face names them."""



@dataclass
class TaskData:
    """One task's sentences per split (`train`, `validation`, `test`), with its label list and family."""

    name: str
    family: str
    labels: list[str]
    splits: dict[str, list[Sentence]] = field(default_factory=dict)


def read_task_splits(spec: TaskSpec, run_config: RunConfig, where: str) -> dict[str, list[Sentence]]:
    """The splits a task's data source holds, keyed `train`, `validation`, `test`; `where` names the task in errors."""
    if spec.data_dir is not None:
        return read_split_dir(run_config.resolve_path(spec.data_dir))
    if spec.hf_dataset is not None:
        return _read_hf_splits(spec, run_config, where)
    files = {"train_file": spec.train_file, "validation_file": spec.validation_file, "test_file": spec.test_file}
    splits = {}
    for key, value in files.items():
        if value is None:
            continue
        path = run_config.resolve_path(value)
        if not path.is_file():
            got = "a folder" if path.is_dir() else "no such file"
            raise RunConfigError(f"{where}.{key}: expected a corpus file, got {got} {path}")
        splits[key.removesuffix("_file")] = read_conll(path)
    return splits


def _read_hf_splits(spec: TaskSpec, run_config: RunConfig, where: str) -> dict[str, list[Sentence]]:
    """A task's splits from a `datasets` source: a local path (relative to `data_root`) or a Hub id.

    A single file holds one split only: read as train, validation and test at once, it would score the model on its
    own training data, so it is refused unless the validation and test splits are switched off."""
    local = run_config.resolve_path(spec.hf_dataset)
    source = str(local) if local.exists() else spec.hf_dataset
    hf_splits = {"train": spec.hf_train_split, "validation": spec.hf_validation_split, "test": spec.hf_test_split}
    wanted = {split: hf_split for split, hf_split in hf_splits.items() if hf_split}
    if local.is_file() and len(wanted) > 1:
        raise RunConfigError(
            f"{where}.hf_dataset: {local} is a single file, one split, but would be read as {sorted(wanted)} alike; "
            f"give a folder or dataset with one file per split, or set hf_validation_split and hf_test_split to null"
        )
    return {split: load_hf_token_dataset(source, hf_split, tokens_column=spec.tokens_column,
                                         tags_column=spec.tags_column)[0] for split, hf_split in wanted.items()}


def seeded_subsample(sentences: list[Sentence], cap: int) -> list[Sentence]:
    """At most `cap` sentences, in corpus order; the same ones whatever the run's seed, so that capped runs (the CPU
    miniature) compare methods and seeds on identical data."""
    if len(sentences) <= cap:
        return sentences
    chosen = random.Random(0).sample(range(len(sentences)), cap)
    return [sentences[index] for index in sorted(chosen)]


def split_sources(spec: TaskSpec, run_config: RunConfig) -> dict[str, str]:
    """Split -> where its sentences come from, as errors name it: the corpus file (sentence lines are its lines), or
    `dataset NAME split SPLIT` (sentence lines are its 1-based rows)."""
    if spec.data_dir is not None:
        return {split: str(path) for split, path in split_files(run_config.resolve_path(spec.data_dir)).items()}
    if spec.hf_dataset is not None:
        hf_splits = {"train": spec.hf_train_split, "validation": spec.hf_validation_split, "test": spec.hf_test_split}
        return {split: f"dataset {spec.hf_dataset!r} split {hf_split!r}" for split, hf_split in hf_splits.items()
                if hf_split}
    files = {"train": spec.train_file, "validation": spec.validation_file, "test": spec.test_file}
    return {split: str(run_config.resolve_path(value)) for split, value in files.items() if value is not None}


def check_split_labels(spec: TaskSpec, splits: dict[str, list[Sentence]], sources: dict[str, str]) -> None:
    """Refuses what would train a head that cannot learn its task, naming the file, line and label:

    - a label outside the task's `labels` (when the config lists them);
    - a training split without any entity (the head would only ever learn "O");
    - an entity type that only the validation or test split holds (the head could never predict it), unless the task
      sets `allow_labels_only_in_evaluation: true`, which makes it a one-line warning.
    """
    for split, sentences in splits.items():
        for sentence in sentences if spec.labels else ():
            unknown = next((label for label in sentence.labels or () if label not in spec.labels), None)
            if unknown is not None:
                raise CorpusFormatError(sources[split], sentence.line, f"expected one of the labels of task "
                                        f"{spec.name!r} {spec.labels}", repr(unknown))
    trained = {kind for sentence in splits["train"] for kind in entity_types(sentence.labels or ())}
    if not trained:
        raise CorpusFormatError(sources["train"], None, f"expected entities in the training split of task "
                                f"{spec.name!r}", f"none in its {len(splits['train'])} sentence(s)")
    for split in ("validation", "test"):
        for sentence in splits.get(split, ()):
            unseen = sorted(set(entity_types(sentence.labels or ())) - trained)
            if not unseen:
                continue
            label = next(label for label in sentence.labels if split_label(label)[1] in unseen)
            error = CorpusFormatError(
                sources[split], sentence.line, f"expected labels of entity types the training split of task "
                f"{spec.name!r} holds {sorted(trained)}", f"{label!r}, which the head could never learn (set "
                f"allow_labels_only_in_evaluation: true on the task to train anyway)")
            if not spec.allow_labels_only_in_evaluation:
                raise error
            logger.warning("%s; allowed by allow_labels_only_in_evaluation", error)
            trained.update(unseen)  # one warning per type


def load_task_data(run_config: RunConfig) -> list[TaskData]:
    """Reads every task's splits and checks their labels (`check_split_labels`). The label list is the config's, or
    B-/I- of every type seen in any split."""
    tasks = []
    for index, spec in enumerate(run_config.tasks):
        where = f"{run_config.source}: tasks[{index}] ({spec.name})"
        splits = read_task_splits(spec, run_config, where)
        if "train" not in splits:
            raise RunConfigError(f"{where}: expected a training split, got only {sorted(splits) or 'none'}")
        caps = {"train": spec.max_train_sentences, "validation": spec.max_validation_sentences,
                "test": spec.max_test_sentences}
        for split, cap in caps.items():
            if cap is not None and split in splits:
                splits[split] = seeded_subsample(splits[split], cap)
        check_split_labels(spec, splits, split_sources(spec, run_config))
        labels = spec.labels or label_list_from(sentence for split in splits.values() for sentence in split)
        tasks.append(TaskData(name=spec.name, family=spec.family, labels=labels, splits=splits))
    return tasks
