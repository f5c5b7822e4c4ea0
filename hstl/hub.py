"""Model folders and the Hugging Face Hub, with `huggingface_hub`: finding a model, and publishing one.

`resolve_model` is the one place where a command's model argument (`--model`, with `--revision`; a run config's
`model.init_from` with `init_from_revision`) becomes a folder: a local folder as it is, otherwise a Hub repository
through the Hugging Face cache. `model_source` says what a run records about that folder (the Hub id and commit of a
cached snapshot, else the folder's path).

`assemble_model_repo` builds the exact folder a Hub repository should hold: the safetensors weights, the tokenizer
files, config.json and the remote-code group as `hstl.remote_code.complete_model_folder` completes every model folder,
the run config and the model card. `push_model_folder` uploads a folder.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from .errors import PublishError, RunConfigError, first_line
from .remote_code import complete_model_folder, remote_code_problems


WEIGHT_FILE_PATTERNS = ("*.safetensors", "model.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "spiece.model", "sentencepiece.bpe.model", "vocab.txt", "vocab.json", "merges.txt")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
"""Weight formats that unpickle on load: never published."""


# ---------------------------------------------------------------------------------------------------------------------
# Finding a model: a local folder, or a Hub repository at a revision

_COMMIT_HASH = re.compile(r"^[0-9a-f]{40}$")


def resolve_model(value: str, revision: str | None = None, *, argument: str = "--model",
                  revision_argument: str = "--revision") -> Path:
    """The model folder `value` names. A local folder is used as it is. Anything else is a Hub id, fetched with
    `huggingface_hub.snapshot_download` at `revision` (a branch, tag or commit; default: `main`): from the Hugging
    Face cache (HF_HUB_CACHE, HF_HOME) when the Hub is offline (HF_HUB_OFFLINE=1) or unreachable and the cache holds
    that revision, downloaded into the cache otherwise. A Hub model's folder is its cache snapshot, named by its commit
    (`model_source` reads the repository and commit back from it); its code files are the repository's own.

    Raises:
        RunConfigError: one line naming `argument` or `revision_argument`, for a revision given with a local folder, a
            value that is neither a folder nor a valid Hub id, an unknown repository or revision, or a Hub model that
            is not cached while the Hub cannot be asked.
    """
    folder = Path(value).expanduser()
    if folder.is_dir():
        if revision is not None:
            raise RunConfigError(f"{revision_argument}: expected it with a Hub id, got it with the local folder "
                                 f"{argument} {value}")
        check_safetensors_weights(folder, argument)
        return folder
    if folder.exists():
        raise RunConfigError(f"{argument}: expected a model folder or a Hub id (user/name), got the file {value}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HFValidationError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError,
    )

    neither = f"{argument}: expected a model folder or a Hub id (user/name), got {value!r}: no such folder, and"
    try:
        snapshot = Path(snapshot_download(value, revision=revision))
    except HFValidationError as error:
        raise RunConfigError(f"{neither} not a valid Hub id ({first_line(error)})") from None
    except RevisionNotFoundError:
        raise RunConfigError(f"{revision_argument}: expected a branch, tag or commit of {value}, got {revision!r}, "
                             f"which the Hub does not know") from None
    except RepositoryNotFoundError:  # GatedRepoError too
        raise RunConfigError(f"{neither} no Hub repository of that name that you may read (a private or gated one "
                             f"needs `hf auth login`)") from None
    except LocalEntryNotFoundError:
        raise RunConfigError(_not_cached(value, revision, argument, revision_argument, neither)) from None
    except (HfHubHTTPError, OSError) as error:
        raise RunConfigError(f"{argument}: expected a model folder or a Hub id (user/name), got {value!r}, which "
                             f"could not be fetched from the Hub ({first_line(error)})") from None
    check_safetensors_weights(snapshot, argument)
    return snapshot


def check_safetensors_weights(folder: Path, argument: str) -> None:
    """Refuses, in one line naming `argument`, a model folder whose weights are pickled only (`pytorch_model.bin`
    and the like): HSTL loads safetensors weights and never unpickles."""
    if not folder.is_dir() or any(folder.glob("*.safetensors")):
        return
    pickled = sorted(path.name for path in folder.iterdir() if path.suffix in PICKLE_SUFFIXES)
    if pickled:
        raise RunConfigError(f"{argument} {folder}: expected safetensors weights (model.safetensors), got {pickled} "
                             f"only, which would be unpickled; re-save the model with save_pretrained("
                             f"safe_serialization=True) where you trust the file")


def _not_cached(value: str, revision: str | None, argument: str, revision_argument: str, neither: str) -> str:
    """The one-line error for a Hub model that the cache does not hold while the Hub cannot be asked: naming
    `revision_argument` (and listing the cached revisions) when the cache holds other revisions of it."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    cache = Path(constants.HF_HUB_CACHE)
    why = ("the Hub is offline (HF_HUB_OFFLINE is set)" if constants.is_offline_mode()
           else "the Hub cannot be reached")
    storage = cache / repo_folder_name(repo_id=value, repo_type="model")
    if not storage.is_dir():
        return f"{neither} not in the Hugging Face cache {cache}, and {why}"
    cached = sorted(path.name for folder in ("refs", "snapshots") if (storage / folder).is_dir()
                    for path in (storage / folder).iterdir())
    return (f"{revision_argument}: expected a revision of {value} that the Hugging Face cache {cache} holds, since "
            f"{why}, got {revision or 'main (the default)'}; cached: {cached}")


def model_source(folder: str | Path) -> dict[str, str]:
    """What a run records as the model it used: `{"model": "user/name", "revision": "<commit>"}` for a Hugging Face
    cache snapshot (`.../models--user--name/snapshots/<commit>`, as `resolve_model` returns a Hub model), else
    `{"model": "<absolute path of the folder>"}`."""
    path = Path(folder).resolve()
    storage = path.parent.parent.name
    if path.parent.name == "snapshots" and storage.startswith("models--") and _COMMIT_HASH.match(path.name):
        return {"model": storage[len("models--"):].replace("--", "/"), "revision": path.name}
    return {"model": str(path)}


# ---------------------------------------------------------------------------------------------------------------------
# Assembling the repository folder


def _check_model_folder(model_dir: Path) -> list[Path]:
    """The weight files of `model_dir`, after checking that it is a safetensors model folder with a tokenizer."""
    if not (model_dir / "config.json").is_file():
        raise PublishError(f"{model_dir}: expected a model folder holding config.json, got none")
    weights = sorted({path for pattern in WEIGHT_FILE_PATTERNS for path in model_dir.glob(pattern)})
    if not any(path.suffix == ".safetensors" for path in weights):
        pickled = sorted(path.name for path in model_dir.iterdir() if path.suffix in PICKLE_SUFFIXES)
        raise PublishError(f"{model_dir}: expected safetensors weights (model.safetensors), got "
                           f"{pickled or 'no weight file'}; re-save the model with save_pretrained")
    if not (model_dir / "tokenizer_config.json").is_file():
        raise PublishError(f"{model_dir}: expected the tokenizer files (tokenizer_config.json, tokenizer.json), got "
                           f"none; save the tokenizer into the folder with tokenizer.save_pretrained")
    return weights


def _copy_run_config(model_dir: Path, out_dir: Path) -> None:
    """run_config.yaml without `data_root`: a path on the training machine, meaningless (and private) elsewhere."""
    source = model_dir / "run_config.yaml"
    if source.is_file():
        run_config = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
        run_config.pop("data_root", None)
        (out_dir / "run_config.yaml").write_text(yaml.safe_dump(run_config, sort_keys=False), encoding="utf-8")


def _prepare_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise PublishError(f"{out_dir}: expected a new or empty folder to assemble the repository in, got "
                           f"{'a file' if not out_dir.is_dir() else 'a folder with files'}")
    out_dir.mkdir(parents=True, exist_ok=True)


def assemble_model_repo(model_dir: str | Path, out_dir: str | Path, repo_id: str,
                        results: dict[str, Any] | None = None) -> list[str]:
    """Builds in `out_dir` (new or empty) the exact folder to upload as `repo_id`; returns its file names.

    Holds: config.json (auto_map + `custom_pipelines`), the remote code from this package (so that model, config and
    pipeline match), safetensors weights, tokenizer files, run_config.yaml (when the folder has one), results.json
    (`results`; default: the model folder's results.json, else its training all_results.json; none when neither
    exists) and the README.md model card. Never a pickled weight file.

    Raises:
        PublishError: the model folder lacks config.json, safetensors weights or the tokenizer, `out_dir` is not
            empty, or a remote-code file fails `remote_code_problems`.
    """
    from .modelcard import find_results, write_model_card

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    weights = _check_model_folder(model_dir)
    results = find_results(model_dir) if results is None else results
    _prepare_out_dir(out_dir)
    for source in [*weights, *(model_dir / name for name in TOKENIZER_FILES if (model_dir / name).is_file())]:
        shutil.copyfile(source, out_dir / source.name)
    shutil.copyfile(model_dir / "config.json", out_dir / "config.json")
    try:
        complete_model_folder(out_dir)  # the code of this package, so that model, config and pipeline match
    except ValueError as error:
        raise PublishError(str(error)) from None
    problems = [problem for path in out_dir.glob("*.py") for problem in remote_code_problems(path)]
    if problems:
        raise PublishError("remote code that must not be published: " + "; ".join(problems))
    _copy_run_config(model_dir, out_dir)
    if results:
        (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    write_model_card(out_dir, repo_id, results)
    return sorted(path.name for path in out_dir.iterdir())


# ---------------------------------------------------------------------------------------------------------------------
# Uploading


def push_model_folder(folder: str | Path, repo_id: str, *, token: str | None = None, private: bool = False,
                      commit_message: str = "Upload HSTL model", revision: str | None = None) -> str:
    """Creates `repo_id` (if needed) and uploads the model folder, leaving out checkpoints and staging folders.

    Returns the URL of the commit.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            folder_path=str(folder), repo_id=repo_id, repo_type="model", commit_message=commit_message,
            revision=revision,
            ignore_patterns=["checkpoints/**", "tokenizer/**", "*.incomplete/**", "runs/**", "best_model/**"],
        )
    except _hub_errors() as error:
        raise PublishError(f"{repo_id}: expected to create and upload to this Hub repository, got "
                           f"{type(error).__name__}: {first_line(error)} (check the network and `hf auth login`; "
                           f"--dry-run OUT writes the folder without uploading)") from None
    return str(getattr(commit, "commit_url", commit))


def _hub_errors() -> tuple[type[BaseException], ...]:
    """What a Hub call raises when the Hub refuses it or cannot be reached: huggingface_hub's HTTP errors, OSError
    (offline mode, DNS, refused connections) and the HTTP client's own transport errors (`httpx`, or the `httpx2`
    that some huggingface_hub releases use)."""
    import importlib

    from huggingface_hub.errors import HfHubHTTPError

    errors: list[type[BaseException]] = [HfHubHTTPError, OSError]
    for client in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(client).HTTPError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def publish_model(model_dir: str | Path, repo_id: str, *, results=None, token: str | None = None,
                  private: bool = False, commit_message: str = "Upload HSTL model") -> str:
    """Assembles the Hub folder of a model (remote code, pipeline, weights, tokenizer, card) and uploads it; the
    one path used by `publish.py` and by `--push_to_hub` in train.py and finetune.py. Returns the commit URL."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hstl-publish-") as staging:
        repo_dir = Path(staging) / "repo"
        assemble_model_repo(model_dir, repo_dir, repo_id, results)
        return push_model_folder(repo_dir, repo_id, token=token, private=private, commit_message=commit_message)
