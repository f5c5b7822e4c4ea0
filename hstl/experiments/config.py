"""What a comparison runs: its corpora (as tasks), seeds, methods, the model, each stage's training settings, and the
controls (reruns of unconverged cells, the compute-matched single-task runs). The sections are read by `run_config`'s
builders (`build_spec`, `build_model_spec`), the top level too: a wrong type or an unknown key is reported the same
way in a run config and a comparison config, and the checks across fields live in `__post_init__`.

The comparison's methods, for each seed:
- single_task:         encoder + CRF trained on the target corpus alone (the paper's XLNet-CRF baseline);
- multi_task:          stage 1 on all corpora, evaluated with each corpus's head;
- finetune_only:       stage 1 on all corpora *but* the target, then fine-tuned on the target (no joint stage); the
                       target's head is new, so this stage trains like a single-task run (`training`, or
                       `finetune_only_training` when given), only from the pretrained encoder;
- hstl:                stage 1 on all corpora, then fine-tuned on the target (stage 2);
- single_task_matched: single-task given as many optimizer steps as HSTL's stage 1 plus stage 2 (the compute-matched
                       control), no early stopping.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..run_config import ModelSpec, RunConfigError, TaskSpec, TrainingSpec, build_model_spec, build_spec


METHODS = ("single_task", "multi_task", "finetune_only", "hstl", "single_task_matched")
# A config without `methods` runs these; the compute-matched control is asked for by name.
DEFAULT_METHODS = ("single_task", "multi_task", "finetune_only", "hstl")


def check_seeds(seeds: Any, name: str) -> None:
    """Seeds (of a config or of `--seeds`): a non-empty list of integers; ValueError naming `name` otherwise."""
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(seed, int) and not isinstance(seed, bool) for seed in seeds)):
        raise ValueError(f"{name}: expected a non-empty list of integers, got {seeds!r}")


def check_choices(values: Any, known: list[str] | tuple[str, ...], name: str, allow_empty: bool = False) -> None:
    """A list drawn from `known` (methods, corpus names), non-empty unless `allow_empty`; ValueError otherwise."""
    if not isinstance(values, list) or (not values and not allow_empty) or not set(values) <= set(known):
        raise ValueError(f"{name}: expected {'a' if allow_empty else 'a non-empty'} list drawn from {list(known)}, "
                         f"got {values!r}")


def check_positive(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")


@dataclass
class RerunSettings:
    """Which methods' cells are rerun until converged: a cell that its budget ended (not early stopping) is trained
    again from scratch with its budget multiplied by `rerun_budget_factor` per round, up to `rerun_max_rounds`.
    Its first rerun is round `rerun_first_round` (default 1): 2 skips the factor-once round and goes straight to
    the factor squared. A mix-in of the comparison and data-efficiency configs."""

    rerun_unconverged: list[str] = field(default_factory=list)
    rerun_budget_factor: int = 3
    rerun_max_rounds: int = 2
    rerun_first_round: int = 1

    def check_reruns(self, methods: tuple[str, ...]) -> None:
        check_choices(self.rerun_unconverged, methods, "rerun_unconverged", allow_empty=True)
        check_positive(self.rerun_budget_factor, "rerun_budget_factor")
        check_positive(self.rerun_max_rounds, "rerun_max_rounds")
        check_positive(self.rerun_first_round, "rerun_first_round")
        if self.rerun_first_round > self.rerun_max_rounds:
            raise ValueError(f"rerun_first_round: expected at most rerun_max_rounds ({self.rerun_max_rounds}), "
                             f"got {self.rerun_first_round}")


@dataclass
class ComparisonConfig(RerunSettings):
    """What to compare: corpora (as tasks), seeds, methods, the model, stage-1 and stage-2 training settings."""

    model: ModelSpec = field(default_factory=ModelSpec)
    corpora: list[TaskSpec] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [1, 2])
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    training: TrainingSpec = field(default_factory=TrainingSpec)  # stage 1 and single-task runs
    finetune_training: TrainingSpec = field(default_factory=TrainingSpec)  # stage 2 of HSTL
    # Stage 2 of finetune_only. Its target head (and, for a new family, its family layer) starts untrained, unlike
    # HSTL's, so by default it trains like a single-task run (`training`), only from the pretrained encoder.
    finetune_only_training: TrainingSpec | None = None
    # Joint runs train several corpora at once: by default they get training.max_steps per corpus, so that each
    # corpus sees about as many batches as in its single-task run.
    stage1_max_steps: int | None = None
    # Settings of the joint runs (stage 1, and finetune_only's pretraining) when they differ from `training`, e.g. a
    # joint budget with temperature sampling and rarer evaluations; its max_steps is then used as it is.
    stage1_training: TrainingSpec | None = None
    # Corpora that get cells (default: all); the others are trained in stage 1 only.
    targets: list[str] | None = None
    # finetune_only costs one stage 1 per target and seed: run it on these targets and seeds only (default: all).
    finetune_only_targets: list[str] | None = None
    finetune_only_seeds: list[int] | None = None
    # single_task_matched runs on these targets (default: all): a single-task run given as many optimizer steps as
    # HSTL's stage 1 plus its stage 2 on the target (same seed), with no early stopping.
    matched_targets: list[str] | None = None
    bootstrap_samples: int = 10_000
    # The block bootstrap's block: this many consecutive test sentences (about one PubMed abstract) are drawn
    # together when a corpus keeps no document boundaries (`hstl.experiments.statistics.block_bootstrap`).
    bootstrap_block_size: int = 10
    data_root: str | None = None
    source: str = "<comparison>"

    def __post_init__(self) -> None:
        if len(self.corpora) < 2:
            raise ValueError(f"corpora: expected at least 2 corpora to compare, got {len(self.corpora)}")
        names = [corpus.name for corpus in self.corpora]
        check_choices(self.methods, METHODS, "methods")
        check_seeds(self.seeds, "seeds")
        for key in ("targets", "finetune_only_targets", "matched_targets"):
            if getattr(self, key) is not None:
                check_choices(getattr(self, key), self.targets or names if key != "targets" else names, key)
        if self.finetune_only_seeds is not None:
            check_seeds(self.finetune_only_seeds, "finetune_only_seeds")
        if self.stage1_training is not None and self.stage1_max_steps is not None:
            raise ValueError("stage1_max_steps: expected it only without stage1_training (whose max_steps counts), "
                             "got both")
        if self.stage1_max_steps is not None:
            check_positive(self.stage1_max_steps, "stage1_max_steps")
        self.check_reruns(METHODS)
        check_positive(self.bootstrap_samples, "bootstrap_samples")
        check_positive(self.bootstrap_block_size, "bootstrap_block_size")

    def target_corpora(self) -> list[TaskSpec]:
        return [c for c in self.corpora if self.targets is None or c.name in self.targets]


TRAINING_SECTIONS = ("training", "finetune_training", "finetune_only_training", "stage1_training")


def read_config_file(path: Path, what: str) -> dict[str, Any]:
    """The YAML mapping of an experiment config, with `data_root` resolved against the file's folder and `source`
    set; RunConfigError when the file is missing or not a mapping."""
    if not path.is_file():
        raise RunConfigError(f"{path}: no such {what} config")
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        raise RunConfigError(f"{path}: expected a mapping of settings, got {type(values).__name__}")
    if "source" in values:  # set from the file's path, never from the file
        raise RunConfigError(f"{path}: source: expected no such key (the config's own path is its source), got "
                             f"{values['source']!r}")
    data_root = values.get("data_root")
    return values | {"data_root": str((path.parent / data_root).resolve()) if data_root else str(path.parent.resolve()),
                     "source": str(path)}


def load_comparison_config(path: str | Path) -> ComparisonConfig:
    path = Path(path)
    values = read_config_file(path, "comparison")
    sections = {key: build_spec(TrainingSpec, values[key], f"{path}: {key}")
                for key in TRAINING_SECTIONS if values.get(key)}
    corpora = values.get("corpora") or []
    if not isinstance(corpora, list):
        raise RunConfigError(f"{path}: corpora: expected a list of corpora, got {corpora!r}")
    built = {"model": build_model_spec(values.get("model") or {}, f"{path}: model"),
             "corpora": [build_spec(TaskSpec, task, f"{path}: corpora[{index}]") for index, task in enumerate(corpora)]}
    return build_spec(ComparisonConfig, {key: value for key, value in values.items() if value is not None
                                         and key not in TRAINING_SECTIONS} | sections | built, str(path))


def override_comparison_config(config: ComparisonConfig, methods: list[str] | None = None,
                               seeds: list[int] | None = None, max_steps: int | None = None) -> ComparisonConfig:
    """The config with command-line overrides applied; `comparison_config.yaml` in the output folder records them."""
    overrides = {key: value for key, value in (("methods", methods), ("seeds", seeds)) if value is not None}
    try:
        config = dataclasses.replace(copy.deepcopy(config), **overrides)
    except ValueError as error:  # the config's own check, named as the flag
        raise RunConfigError(f"--{error}") from None
    if max_steps is not None:
        if max_steps < 1:
            raise RunConfigError(f"--max_steps: expected a positive number of steps, got {max_steps}")
        config.training.max_steps = max_steps
        config.training.num_train_epochs = None
    return config


def comparison_config_to_dict(config: ComparisonConfig) -> dict[str, Any]:
    """The config as `comparison_config.yaml` records it beside a comparison's outputs."""
    values = asdict(config)
    values.pop("source")
    return values
