# Copyright 2026 The HSTL developers. Licensed under the Apache License, Version 2.0.
"""HSTL model configuration.

This file is Hub remote code, copied into every saved model folder with its siblings: it imports only `transformers`,
`labels_hstl` (the label rules) and `entity_types_hstl` (the shared entity types).
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PretrainedConfig, XLNetConfig


# A model folder loads these files as the package `transformers_modules.<folder>` (relative imports); the installed
# package imports them as top-level modules. transformers' import check skips `try` blocks.
try:
    from .entity_types_hstl import default_entity_type, entity_label
    from .labels_hstl import check_iob2_labels, merged_labels
    from .labels_hstl import entity_types as label_types_of
except ImportError:
    from entity_types_hstl import default_entity_type, entity_label
    from labels_hstl import check_iob2_labels, merged_labels
    from labels_hstl import entity_types as label_types_of


LOSS_REDUCTIONS = ("mean", "sum", "token_mean")


def _normalize_task(task: Any, position: int) -> dict[str, Any]:
    """Checks one task description and returns it as a plain JSON-able dict {"name", "labels", "family"}."""
    if not isinstance(task, dict):
        raise ValueError(f"tasks[{position}]: expected a dict with keys name, labels, family, got {type(task).__name__}")
    missing = {"name", "labels", "family"} - set(task)
    if missing:
        raise ValueError(f"tasks[{position}]: expected keys name, labels, family; missing {sorted(missing)}")
    name, family = task["name"], task["family"]
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"tasks[{position}]: expected a non-empty task name, got {name!r}")
    if not isinstance(family, str) or not family.strip():
        raise ValueError(f"tasks[{name!r}]: expected a non-empty entity family name, got {family!r}")
    labels = list(task["labels"])
    check_iob2_labels(labels, f"tasks[{name!r}]")
    return {"name": name, "labels": labels, "family": family}


def _check_entity_type_overrides(tasks: list[dict[str, Any]], overrides: Any) -> None:
    """Raises `ValueError` naming the entry unless `overrides` maps known tasks to {their label type: type name}."""
    if not isinstance(overrides, dict):
        raise ValueError(f"entity_types: expected a mapping task -> {{label type: entity type}}, got {overrides!r}")
    label_types = {task["name"]: label_types_of(task["labels"]) for task in tasks}
    unknown = sorted(set(overrides) - set(label_types))
    if unknown:
        raise ValueError(f"entity_types: expected task names among {list(label_types)}, got {unknown}")
    for name, types in overrides.items():
        if not isinstance(types, dict):
            raise ValueError(f"entity_types[{name!r}]: expected a mapping label type -> entity type, got {types!r}")
        unknown = sorted(set(types) - set(label_types[name]))
        if unknown:
            raise ValueError(f"entity_types[{name!r}]: expected label types of the task {label_types[name]}, "
                             f"got {unknown}")
        for label_type, entity_type in types.items():
            if not isinstance(entity_type, str) or not entity_type or any(char.isspace() for char in entity_type):
                raise ValueError(f"entity_types[{name!r}][{label_type!r}]: expected an entity type name (non-empty, "
                                 f"no whitespace), got {entity_type!r}")


def _is_merged_label_space(id2label: dict) -> bool:
    """Whether `id2label` is `O`, then `B-<type>`, `I-<type>` per type (`merged_labels`), whatever the types."""
    labels = [id2label[key] for key in sorted(id2label, key=int)]
    try:
        return labels == merged_labels([labels])
    except ValueError:  # not IOB2 labels
        return False


def _resolve_entity_types(tasks: list[dict[str, Any]], overrides: Any) -> dict[str, dict[str, str]]:
    """Task -> {label type: shared entity type} for every task and label type: `overrides` (checked) over the
    defaults of `entity_types_hstl.DEFAULT_ENTITY_TYPES`."""
    overrides = overrides or {}
    _check_entity_type_overrides(tasks, overrides)
    return {task["name"]: {label_type: overrides.get(task["name"], {}).get(label_type, default_entity_type(label_type))
                           for label_type in label_types_of(task["labels"])}
            for task in tasks}


class HSTLConfig(PretrainedConfig):
    r"""
    Configuration of an [`HSTLModel`]: a hierarchical shared transfer learning tagger (Chai et al., BMC Bioinformatics
    23:8, 2022).

    The hierarchy has three levels:

    1. one encoder shared by every task (XLNet by default; any `transformers` encoder, chosen by the `model_type` of
       `encoder_config`);
    2. one dense layer per entity family, shared by the tasks of that family (switch off with `use_family_layers=False`
       to get plain multi-task learning with a shared encoder);
    3. per task (corpus): an emission layer and a linear-chain CRF over words.

    Args:
        encoder_config (`dict` or `PretrainedConfig`, *optional*):
            Configuration of the shared encoder. A dict must hold `model_type` (e.g. `"xlnet"`, `"bert"`). Defaults to
            an `XLNetConfig()` (the `xlnet-base-cased` architecture).
        tasks (`list[dict]`, *optional*):
            The tasks, in order. Each is `{"name": str, "labels": list[str], "family": str}` with IOB2 labels. A task's
            index in this list is its `task_id`.
        use_family_layers (`bool`, *optional*, defaults to `True`):
            Whether level 2 (one layer per entity family) exists.
        family_hidden_size (`int`, *optional*):
            Output size of each family layer. Defaults to the encoder's hidden size.
        family_activation (`str`, *optional*, defaults to `"gelu"`):
            Activation of the family layers, one of `"gelu"`, `"relu"`, `"tanh"`.
        hidden_dropout (`float`, *optional*, defaults to 0.1):
            Dropout applied to the encoder's word representations and to the family layers' outputs.
        loss_reduction (`str`, *optional*, defaults to `"mean"`):
            How per-sentence CRF negative log-likelihoods combine into the loss: `"mean"` over the sentences of the
            batch, `"sum"`, or `"token_mean"` (sum divided by the number of words).
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initializer of the family and emission layers.
        crf_init_range (`float`, *optional*, defaults to 0.1):
            CRF transition scores are initialised uniformly in `[-crf_init_range, crf_init_range]`.
        window_max_length (`int`, *optional*, defaults to 128):
            Sub-tokens per encoder window, special tokens included. A longer sentence is cut into overlapping windows,
            never truncated. Training, evaluation, `predict.py` and the pipeline all read it from here. (Not
            `max_length`: transformers reserves that name for generation.)
        window_overlap (`int`, *optional*, defaults to 16):
            Sub-tokens of context shared by consecutive windows of a long sentence; `0 <= window_overlap <
            window_max_length // 2`.
        entity_types (`dict[str, dict[str, str]]`, *optional*):
            Task -> {label type: shared entity type}, e.g. `{"BioNLP09": {"Protein": "Gene"}}`: the type that every
            output gives a head's mentions. Entries given override the defaults (`entity_types_hstl.DEFAULT_ENTITY_TYPES`;
            a label type missing there keeps its name); the config holds every task's full mapping, which follows
            `add_task` and `keep_tasks`.

    `id2label` / `label2id` are not arguments: they are derived from `tasks` and `entity_types` (and follow
    `add_task`), as the merged label space of all heads over shared entity types: `O`, then `B-<type>`, `I-<type>` per
    type in order of first appearance (`labels_hstl.merged_labels`); heads whose label types share an entity type
    share its labels. These are the labels of [`HSTLForTokenClassification`]'s `logits`. A given `id2label` (config.json
    holds one) must be such a label space, and is derived again: editing `entity_types` in config.json is enough.
    """

    model_type = "hstl"
    sub_configs = {"encoder_config": AutoConfig}

    def __init__(
        self,
        encoder_config: dict | PretrainedConfig | None = None,
        tasks: list[dict] | None = None,
        use_family_layers: bool = True,
        family_hidden_size: int | None = None,
        family_activation: str = "gelu",
        hidden_dropout: float = 0.1,
        loss_reduction: str = "mean",
        initializer_range: float = 0.02,
        crf_init_range: float = 0.1,
        window_max_length: int = 128,
        window_overlap: int = 16,
        entity_types: dict[str, dict[str, str]] | None = None,
        **kwargs,
    ):
        if encoder_config is None:
            encoder_config = XLNetConfig()
        elif isinstance(encoder_config, dict):
            if "model_type" not in encoder_config:
                raise ValueError("encoder_config: expected a dict with a 'model_type' key (e.g. 'xlnet'), got none")
            encoder_config = AutoConfig.for_model(**encoder_config)
        elif not isinstance(encoder_config, PretrainedConfig):
            raise ValueError(f"encoder_config: expected a dict or PretrainedConfig, got {type(encoder_config).__name__}")
        tasks = [_normalize_task(task, position) for position, task in enumerate(tasks or [])]
        names = [task["name"] for task in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"tasks: expected unique task names, got {names}")
        if family_hidden_size is not None and family_hidden_size <= 0:
            raise ValueError(f"family_hidden_size: expected a positive int or None, got {family_hidden_size}")
        if family_activation not in ("gelu", "relu", "tanh"):
            raise ValueError(f"family_activation: expected 'gelu', 'relu' or 'tanh', got {family_activation!r}")
        if not 0.0 <= hidden_dropout < 1.0:
            raise ValueError(f"hidden_dropout: expected a value in [0, 1), got {hidden_dropout}")
        if loss_reduction not in LOSS_REDUCTIONS:
            raise ValueError(f"loss_reduction: expected one of {LOSS_REDUCTIONS}, got {loss_reduction!r}")
        if initializer_range <= 0 or crf_init_range < 0:
            raise ValueError(
                f"initializer_range/crf_init_range: expected > 0 and >= 0, got {initializer_range}, {crf_init_range}"
            )

        if not isinstance(window_max_length, int) or window_max_length < 2:
            raise ValueError(f"window_max_length: expected an int >= 2, got {window_max_length!r}")
        if not isinstance(window_overlap, int) or not 0 <= window_overlap < window_max_length // 2:
            raise ValueError(f"window_overlap: expected 0 <= window_overlap < window_max_length // 2 = "
                             f"{window_max_length // 2}, got {window_overlap!r}")

        self.encoder_config = encoder_config
        self.tasks = tasks
        self.use_family_layers = use_family_layers
        self.family_hidden_size = family_hidden_size
        self.family_activation = family_activation
        self.hidden_dropout = hidden_dropout
        self.loss_reduction = loss_reduction
        self.initializer_range = initializer_range
        self.crf_init_range = crf_init_range
        self.window_max_length = window_max_length
        self.window_overlap = window_overlap
        self.entity_types = _resolve_entity_types(tasks, entity_types)
        given_id2label = kwargs.pop("id2label", None)
        kwargs.pop("label2id", None)
        kwargs.pop("num_labels", None)
        super().__init__(**kwargs)
        self._set_label_maps()
        # config.json holds a merged label space that is stale after its `entity_types` were edited by hand, or that
        # is over the heads' own label types (saved before `entity_types` existed): it is derived again, not refused.
        if given_id2label is not None and not _is_merged_label_space(given_id2label):
            raise ValueError(f"id2label: expected the merged labels of the tasks {self.id2label} (it is derived from "
                             f"`tasks` and `entity_types`), got {given_id2label}")

    def __setattr__(self, key: str, value: Any) -> None:
        initialized = "id2label" in self.__dict__
        if key == "entity_types" and initialized:  # checked, and completed from the defaults
            value = _resolve_entity_types(self.tasks, value)
        super().__setattr__(key, value)
        if key == "tasks" and initialized:  # add_task, keep_tasks: the types and label maps follow the tasks
            kept = {task["name"]: {label_type: entity_type
                                   for label_type, entity_type in self.entity_types.get(task["name"], {}).items()
                                   if label_type in label_types_of(task["labels"])}
                    for task in self.tasks}
            super().__setattr__("entity_types", _resolve_entity_types(self.tasks, kept))
        if key in ("tasks", "entity_types") and initialized:
            self._set_label_maps()

    def _set_label_maps(self) -> None:
        labels = merged_labels([self.entity_labels(task["name"]) for task in self.tasks])
        self.id2label = dict(enumerate(labels))
        self.label2id = {label: index for index, label in enumerate(labels)}

    # Everything below is derived from `tasks`, so it is never stored twice in config.json.

    @property
    def task_names(self) -> list[str]:
        return [task["name"] for task in self.tasks]

    @property
    def families(self) -> list[str]:
        """Entity families in order of first appearance among the tasks."""
        return list(dict.fromkeys(task["family"] for task in self.tasks))

    @property
    def encoder_hidden_size(self) -> int:
        return self.encoder_config.hidden_size

    @property
    def head_input_size(self) -> int:
        """Size of the word representations that the emission layers read."""
        if self.use_family_layers:
            return self.family_hidden_size or self.encoder_hidden_size
        return self.encoder_hidden_size

    def task_index(self, name: str) -> int:
        """The `task_id` of task `name`; raises `ValueError` listing the known tasks when it is unknown."""
        names = self.task_names
        if name not in names:
            raise ValueError(f"unknown task {name!r}; known tasks: {names}")
        return names.index(name)

    def task(self, name: str) -> dict[str, Any]:
        return self.tasks[self.task_index(name)]

    def task_label2id(self, name: str) -> dict[str, int]:
        """Label -> id map of task `name` (string keys, as JSON keeps them)."""
        return {label: index for index, label in enumerate(self.task(name)["labels"])}

    def task_id2label(self, name: str) -> dict[int, str]:
        return dict(enumerate(self.task(name)["labels"]))

    def entity_labels(self, name: str) -> list[str]:
        """The labels of task `name` over shared entity types: `B-Protein` is `B-Gene` by default, and so on."""
        return [entity_label(label, self.entity_types[name]) for label in self.task(name)["labels"]]

    def update_entity_types(self, overrides: dict[str, dict[str, str]]) -> None:
        """Sets the entity types of some label types of some tasks (`{task: {label type: entity type}}`), keeping the
        others; raises `ValueError` naming the entry for an unknown task or label type, or a bad type name."""
        _check_entity_type_overrides(self.tasks, overrides)
        self.entity_types = {name: {**types, **overrides.get(name, {})} for name, types in self.entity_types.items()}

    def tasks_producing(self, entity_types: list[str], tasks: list[str] | None = None) -> list[str]:
        """The heads among `tasks` (default: all, in config order) that produce one of the shared `entity_types`.

        Raises:
            ValueError: listing the types these heads produce, for a type that none of them produces.
        """
        names = self.task_names if tasks is None else list(tasks)
        produced = sorted({entity_type for name in names for entity_type in self.entity_types[name].values()})
        unknown = [entity_type for entity_type in entity_types if entity_type not in produced]
        if unknown or not entity_types:
            raise ValueError(f"expected entity types that the heads {names} produce ({', '.join(produced)}), "
                             f"got {unknown or list(entity_types)}")
        return [name for name in names if set(self.entity_types[name].values()) & set(entity_types)]

    def add_task(self, name: str, labels: list[str], family: str) -> None:
        """Appends a task; its id is the next free index."""
        if name in self.task_names:
            raise ValueError(f"task {name!r} exists already; known tasks: {self.task_names}")
        self.tasks = self.tasks + [_normalize_task({"name": name, "labels": labels, "family": family}, len(self.tasks))]


__all__ = ["HSTLConfig"]


# `save_pretrained` then writes `auto_map` into config.json and copies this file beside the weights.
HSTLConfig.register_for_auto_class()
