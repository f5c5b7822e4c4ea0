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

from ..errors import PredictionInputError
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


def load_model_and_tokenizer(model_dir: PathLike):
    """`(HSTLModel, fast tokenizer)` from a model folder as `train.py` saves it; the model is in eval mode."""
    from modeling_hstl import HSTLModel

    config = load_model_config(model_dir)
    tokenizer = load_tokenizer_of(model_dir)
    model = HSTLModel.from_pretrained(model_dir, config=config)
    model.eval()
    return model, tokenizer


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
    """How sentences become encoder windows and batches."""

    max_length: int
    overlap: int
    batch_size: int


def _saved_window_values(model_dir: PathLike, config: Any) -> dict[str, int]:
    """What the model was trained with: the folder's `run_config.yaml` (the training run's own record) when there is
    one, else the config's `window_max_length` / `window_overlap` (what the pipeline uses; a published or downloaded
    folder has no run config), else the defaults of `hstl.run_config.TrainingSpec`."""
    from ..run_config import TrainingSpec, load_run_config

    saved = Path(model_dir) / "run_config.yaml"
    if saved.is_file():
        training = load_run_config(saved).training
        return {"max_length": training.max_length, "overlap": training.window_overlap,
                "batch_size": training.eval_batch_size}
    defaults = TrainingSpec()
    stored_max_length = getattr(config, "window_max_length", None)
    stored_overlap = getattr(config, "window_overlap", None)
    return {
        "max_length": defaults.max_length if stored_max_length is None else stored_max_length,
        "overlap": defaults.window_overlap if stored_overlap is None else stored_overlap,
        "batch_size": defaults.eval_batch_size,
    }


def window_settings(
    model_dir: PathLike, max_length: int | None = None, overlap: int | None = None, batch_size: int | None = None,
    *, config: Any = None,
) -> WindowSettings:
    """The window settings to tag with, for `predict.py`, evaluation and the benchmarks: given values win, then what
    the model was trained with (its `run_config.yaml`, else its config's window fields, as the pipeline reads them),
    then `train.py`'s defaults. `config` saves reading the folder's config again.

    Raises:
        PredictionInputError: naming `--batch_size`, for a batch size below 1.
    """
    if config is None and (Path(model_dir) / "config.json").is_file():
        config = load_model_config(model_dir)
    saved = _saved_window_values(model_dir, config)
    settings = WindowSettings(
        max_length=saved["max_length"] if max_length is None else max_length,
        overlap=saved["overlap"] if overlap is None else overlap,
        batch_size=saved["batch_size"] if batch_size is None else batch_size,
    )
    if settings.batch_size < 1:
        raise PredictionInputError(f"--batch_size: expected a positive number of windows, got {settings.batch_size}")
    return settings


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
