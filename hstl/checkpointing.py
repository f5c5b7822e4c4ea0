"""Atomic checkpoints and model folders.

A run killed while saving must leave the previous checkpoint intact: everything is written into a sibling folder first
and moved into place with `os.replace` once complete, and a checkpoint counts only when its `trainer_state.json` (the
last file written) is there. Trainer state is JSON, never a pickle.

`trainer_state.json` records the sha256 of every other file of the checkpoint (`files_sha256`: weights, optimizer,
scheduler, random states); loading checks them first, so that a weight file changed, cut short, replaced or added
(a `custom_checkpoint_0.pkl` that accelerate would unpickle) is refused in one line that names the older checkpoint
to resume from, when there is one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.utils.constants import RNG_STATE_NAME

from .errors import CheckpointError, first_line
from .fingerprint import file_sha256
from .remote_code import complete_model_folder


CHECKPOINTS_DIR = "checkpoints"
TRAINER_STATE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")
_INCOMPLETE_SUFFIX = ".incomplete"


def checkpoint_dir(output_dir: Path, step: int) -> Path:
    return Path(output_dir) / CHECKPOINTS_DIR / f"step_{step:08d}"


def save_checkpoint(accelerator: Accelerator, output_dir: Path, step: int, trainer_state: dict[str, Any]) -> Path:
    """`accelerator.save_state` into `step_N.incomplete`, then trainer_state.json, then rename to `step_N`."""
    final = checkpoint_dir(output_dir, step)
    staging = final.with_name(final.name + _INCOMPLETE_SUFFIX)
    if accelerator.is_main_process and staging.exists():
        shutil.rmtree(staging)  # left by a run killed mid-save
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging), safe_serialization=True)
    accelerator.wait_for_everyone()  # every process's random states are on disk before they are summed up
    if accelerator.is_main_process:
        _write_json_atomically(staging / TRAINER_STATE, {**trainer_state, "files_sha256": files_sha256(staging)})
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    accelerator.wait_for_everyone()
    return final


def files_sha256(checkpoint: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file of a checkpoint folder but `trainer_state.json`, in path order."""
    checkpoint = Path(checkpoint)
    files = sorted(path for path in checkpoint.rglob("*") if path.is_file() and path.name != TRAINER_STATE)
    return {path.relative_to(checkpoint).as_posix(): file_sha256(path) for path in files}


def damaged_checkpoint(checkpoint: Path, what: str) -> CheckpointError:
    """The one-line error for a damaged checkpoint: what is wrong, and the newest complete checkpoint older than it
    to resume from (or that there is none)."""
    checkpoint = Path(checkpoint)
    older = [path for path in list_checkpoints(checkpoint.parent.parent)
             if _step_of(path) is not None and _step_of(checkpoint) is not None and _step_of(path) < _step_of(checkpoint)]
    then = (f"the older checkpoint {older[-1]} is complete: resume from it with --resume_from_checkpoint {older[-1]}"
            if older else "no older checkpoint exists: train afresh with --overwrite_output_dir")
    return CheckpointError(f"checkpoint {checkpoint} is damaged: {what}; {then}")


def _step_of(checkpoint: Path) -> int | None:
    match = _STEP_DIR.match(Path(checkpoint).name)
    return int(match.group(1)) if match else None


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    path = Path(checkpoint) / TRAINER_STATE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise damaged_checkpoint(checkpoint, f"{TRAINER_STATE} is missing (the checkpoint is incomplete)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise damaged_checkpoint(checkpoint, f"{path} is not valid JSON ({error})") from None
    if not isinstance(state, dict) or not isinstance(state.get("completed_steps"), int):
        raise damaged_checkpoint(checkpoint, f"{path} has no integer completed_steps")
    return state


def verify_checkpoint_files(checkpoint: Path, state: dict[str, Any]) -> None:
    """Refuses a checkpoint whose files are not those it was saved with (`files_sha256` of its trainer state; a
    checkpoint of an older version, without them, is not checked)."""
    recorded = state.get("files_sha256")
    if recorded is None:
        return
    present = files_sha256(checkpoint)
    added = sorted(set(present) - set(recorded))
    missing = sorted(set(recorded) - set(present))
    changed = [name for name in recorded if name in present and present[name] != recorded[name]]
    problems = ([f"{name} differs from the file saved (sha256)" for name in changed]
                + [f"{name} is missing" for name in missing]
                + [f"{name} was not saved with it (nothing unknown is loaded)" for name in added])
    if problems:
        raise damaged_checkpoint(checkpoint, "; ".join(problems))


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (incomplete staging folders are ignored)."""
    folder = Path(output_dir) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in folder.iterdir() if (match := _STEP_DIR.match(path.name))]
    return [path for _, path in sorted(found) if (path / TRAINER_STATE).is_file()]


def find_latest_checkpoint(output_dir: Path) -> Path | None:
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1] if checkpoints else None


def prune_checkpoints(output_dir: Path, keep: int) -> None:
    """Deletes all but the newest `keep` complete checkpoints (keep <= 0 keeps all)."""
    if keep <= 0:
        return
    for path in list_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def load_checkpoint(accelerator: Accelerator, checkpoint: Path) -> dict[str, Any]:
    """Restores model, optimizer, scheduler and RNG states; a damaged file is reported with the checkpoint's path."""
    state = read_trainer_state(checkpoint)
    verify_checkpoint_files(checkpoint, state)
    try:
        _read_rng_states(accelerator, Path(checkpoint))
        accelerator.load_state(str(checkpoint))
    except Exception as error:  # safetensors/torch raise many types for truncated or corrupted files
        # torch's pickle refusals run over several lines: the first says what
        raise damaged_checkpoint(checkpoint, f"{type(error).__name__}: {first_line(error)}") from None
    return state


def _read_rng_states(accelerator: Accelerator, checkpoint: Path) -> None:
    """Reads this process's RNG states as `load_state` will, but lets a failure through: `load_state` only logs
    "Could not load random states" and goes on, which would make a resumed run silently differ (dropout)."""
    from accelerate.utils import load  # torch.load(weights_only=True) with the numpy types RNG states need

    path = checkpoint / f"{RNG_STATE_NAME}_{accelerator.process_index}.pkl"
    states = load(path)
    if not isinstance(states, dict) or "torch_manual_seed" not in states:
        raise ValueError(f"{path} holds no torch RNG state")


def save_model_folder(accelerator: Accelerator, model, tokenizer, folder: Path) -> None:
    """Writes a loadable model folder (config with auto_map, safetensors, remote code, tokenizer) file by file
    atomically: each file is written in a staging folder and moved over its old version."""
    folder = Path(folder)
    staging = folder.with_name(folder.name + _INCOMPLETE_SUFFIX)
    unwrapped = accelerator.unwrap_model(model)
    state_dict = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        if staging.exists():
            shutil.rmtree(staging)
        unwrapped.save_pretrained(staging, state_dict=state_dict, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        complete_model_folder(staging)  # remote-code group, auto_map and custom_pipelines: a complete Hub repo
        folder.mkdir(parents=True, exist_ok=True)
        # Weights last: a reader never sees new weights beside an old config.
        names = sorted(os.listdir(staging), key=lambda name: name.endswith(".safetensors"))
        for name in names:
            os.replace(staging / name, folder / name)
        shutil.rmtree(staging)
    accelerator.wait_for_everyone()


def _write_json_atomically(path: Path, value: Any) -> None:
    staging = path.with_name(path.name + _INCOMPLETE_SUFFIX)
    staging.write_text(json.dumps(value, indent=2), encoding="utf-8")
    os.replace(staging, path)
