"""The corpora of a run: every task's sentences per split, read as its run config says (a corpus folder, files, or a
Hugging Face dataset), capped where the config caps them, with the task's label list.

Training and evaluation both read corpora through `load_task_data`. Light on purpose: reading TSV corpora imports
neither torch nor Accelerate (`datasets` only for a task that names an `hf_dataset`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .data import Sentence, label_list_from, load_hf_token_dataset, read_conll, read_split_dir
from .errors import RunConfigError
from .run_config import RunConfig, TaskSpec


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


def load_task_data(run_config: RunConfig) -> list[TaskData]:
    """Reads every task's splits. The label list is the config's, or B-/I- of every type seen in any split."""
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
        labels = spec.labels or label_list_from(sentence for split in splits.values() for sentence in split)
        tasks.append(TaskData(name=spec.name, family=spec.family, labels=labels, splits=splits))
    return tasks
