"""Loading a model folder for tagging or evaluation: its config, tokenizer and model, the heads to use, and the one
function that decides the window settings (`window_settings`) for `predict.py`, evaluation and benchmarks.

Light until a model is loaded: torch and transformers are imported inside the functions that need them, so that a
bad argument is reported in a moment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from windows_hstl import DEFAULT_MAX_LENGTH, DEFAULT_OVERLAP, check_window_size

from ..errors import PredictionInputError, first_line
from ..formats.common import PathLike


def load_model_config(model_dir: PathLike):
    """The `HSTLConfig` of a model folder (cheap: no weights), after checking the folder is one."""
    from configuration_hstl import HSTLConfig

    folder = Path(model_dir)
    if not (folder / "config.json").is_file():
        got = "a folder without config.json" if folder.is_dir() else "no such folder"
        raise FileNotFoundError(f"{folder}: expected a model folder holding config.json, got {got}")
    config = HSTLConfig.from_pretrained(folder)
    if not config.tasks:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
        raise PredictionInputError(
            f"{folder}: expected an HSTL model folder (model_type 'hstl' with task heads), got model_type "
            f"{model_type!r} without tasks"
        )
    return config


def load_tokenizer_of(model_dir: PathLike):
    """The fast tokenizer saved in a model folder; a missing or slow one is a `PredictionInputError`."""
    from ..tokenization import load_tokenizer

    try:
        return load_tokenizer(model_dir)
    except (OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PredictionInputError(
            f"{model_dir}: expected a fast tokenizer saved in the model folder ({first_line})"
        ) from None


def load_model(model_dir: PathLike, config=None):
    """The `HSTLModel` of a model folder, in eval mode (`config`: its `load_model_config`, when already read).

    Raises:
        RunConfigError: the folder holds pickled weights only (`hstl.hub.check_safetensors_weights`).
        PredictionInputError: one line naming the folder, when the weights are missing or cannot be read.
    """
    from modeling_hstl import HSTLModel

    from ..hub import check_safetensors_weights

    check_safetensors_weights(Path(model_dir), "--model")
    try:
        model = HSTLModel.from_pretrained(model_dir, config=config if config is not None else load_model_config(model_dir))
    except Exception as error:  # safetensors, torch and transformers raise many types for missing or damaged weights
        raise PredictionInputError(f"{model_dir}: expected a model folder with readable safetensors weights, got "
                                   f"{type(error).__name__}: {first_line(error)}") from None
    return model.eval()


def load_model_and_tokenizer(model_dir: PathLike):
    """`(HSTLModel, fast tokenizer)` from a model folder as `train.py` saves it; the model is in eval mode."""
    config = load_model_config(model_dir)
    tokenizer = load_tokenizer_of(model_dir)
    return load_model(model_dir, config), tokenizer


def resolve_tasks(config, tasks: Sequence[str] | None, entity_types: Sequence[str] | None = None) -> list[str]:
    """The heads to tag with, in the order given (all of the model's, in its order, when `tasks` is None); with
    `entity_types` (shared types, `config.entity_types`), only those of them that produce one of the types.

    Raises:
        PredictionInputError: naming `--tasks` and listing the known tasks, for an unknown or repeated name; naming
            `--entity_types` and listing the types the heads produce, for a type none of them produces.
    """
    names = _named_tasks(config, tasks)
    if entity_types is None:
        return names
    try:
        return config.tasks_producing([entity_types] if isinstance(entity_types, str) else list(entity_types), names)
    except ValueError as error:
        raise PredictionInputError(f"--entity_types: {error}") from None


def _named_tasks(config, tasks: Sequence[str] | None) -> list[str]:
    known = list(config.task_names)
    if tasks is None:
        return known
    names = [tasks] if isinstance(tasks, str) else list(tasks)
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise PredictionInputError(f"--tasks: expected task names among the model's {known}, got {unknown or names}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise PredictionInputError(f"--tasks: expected each task once, got {repeated} more than once")
    return names


@dataclass(frozen=True)
class WindowSettings:
    """How sentences become encoder windows (`windows_hstl.check_window_size` holds their rule) and batches."""

    max_length: int
    overlap: int
    batch_size: int

    def __post_init__(self) -> None:
        check_window_size(self.max_length, self.overlap)


DEFAULT_BATCH_SIZE = 64
"""Windows per batch when tagging, unless given."""


def window_settings(
    model_dir: PathLike, max_length: int | None = None, overlap: int | None = None, batch_size: int | None = None,
    *, config: Any = None,
) -> WindowSettings:
    """The window settings to tag with, for `predict.py`, evaluation and the benchmarks: given values win, then the
    model's config.json (`window_max_length`, `window_overlap`: what the model was trained with, and what the
    pipeline reads), then the defaults of `windows_hstl`. `config` saves reading the folder's config again.

    Raises:
        PredictionInputError: naming `--max_length`, `--overlap` or `--batch_size`, for settings that break
            `windows_hstl.check_window_size` or a batch size below 1.
    """
    if config is None and (Path(model_dir) / "config.json").is_file():
        config = load_model_config(model_dir)
    stored_max_length = getattr(config, "window_max_length", None)
    stored_overlap = getattr(config, "window_overlap", None)
    if max_length is None:
        max_length = DEFAULT_MAX_LENGTH if stored_max_length is None else stored_max_length
    if overlap is None:
        overlap = DEFAULT_OVERLAP if stored_overlap is None else stored_overlap
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    try:
        check_window_size(max_length, overlap, names=("--max_length", "--overlap"))
    except ValueError as error:
        raise PredictionInputError(str(error)) from None
    if batch_size < 1:
        raise PredictionInputError(f"--batch_size: expected a positive number of windows, got {batch_size}")
    return WindowSettings(max_length, overlap, batch_size)


def check_window_settings(tokenizer, settings: WindowSettings) -> None:
    """Raises `PredictionInputError` naming `--max_length`/`--overlap` when the tokenizer cannot window with them."""
    from windows_hstl import make_windowing_map_fn

    try:
        make_windowing_map_fn(tokenizer, {}, 0, settings.max_length, settings.overlap)
    except ValueError as error:
        raise PredictionInputError(f"--max_length/--overlap: {error}") from None


DTYPES = ("fp32", "bf16", "fp16")
"""`--dtype`: precision of the forward pass (bf16/fp16: `torch.autocast` around tagging, see `autocast_to`)."""
QUANTIZATIONS = ("int8",)
"""`--quantize`: dynamic int8 quantization of the Linear layers (CPU only)."""


def check_speed_options(dtype: str, quantize: str | None, device_type: str) -> None:
    """One-line errors for a precision the device cannot run (checked before the model loads)."""
    if dtype not in DTYPES:
        raise PredictionInputError(f"--dtype: expected one of {list(DTYPES)}, got {dtype!r}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise PredictionInputError(f"--quantize: expected one of {list(QUANTIZATIONS)}, got {quantize!r}")
    if dtype == "fp16" and device_type == "cpu":
        raise PredictionInputError("--dtype fp16: expected a GPU, got the CPU (use --dtype bf16 or --quantize int8)")
    if quantize is not None and device_type != "cpu":
        raise PredictionInputError(f"--quantize {quantize}: expected the CPU (dynamic quantization runs there), got "
                                   f"{device_type} (use --dtype bf16/fp16, or --cpu)")
    if quantize is not None and dtype != "fp32":
        raise PredictionInputError(f"--quantize {quantize}: expected --dtype fp32 with it, got --dtype {dtype}")


def quantize_linear_layers(model):
    """The model with every `nn.Linear` (encoder, family layers, emission layers) dynamically quantized to int8:
    weights stored in int8, activations quantized per batch on the fly; the CRF transitions stay float."""
    import torch

    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def autocast_to(dtype: str, device_type: str):
    """The context that runs the forward pass in `dtype` (a `DTYPES` name): `torch.autocast`, enabled unless fp32.
    Not `Accelerator(mixed_precision=...)`: its process-wide state cannot change between calls in one process."""
    import torch

    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    return torch.autocast(device_type=device_type, dtype=torch_dtype, enabled=dtype != "fp32")
