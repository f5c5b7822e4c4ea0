"""Publishing model folders on the Hugging Face Hub with `huggingface_hub`.

`assemble_model_repo` builds the exact folder a Hub repository should hold: config.json with `auto_map` and the
`hstl-ner` custom pipeline, the remote code (model, config, pipeline and the sibling modules the pipeline imports),
the safetensors weights, the tokenizer files, the run config and the model card. `push_model_folder` uploads a folder.
`remote_code_problems` is the static check that the shipped code imports only what remote code may import and does
not touch the network, evaluate strings or write files.
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from .errors import PublishError


WEIGHT_FILE_PATTERNS = ("*.safetensors", "model.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "spiece.model", "sentencepiece.bpe.model", "vocab.txt", "vocab.json", "merges.txt")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
"""Weight formats that unpickle on load: never published."""
AUTO_MAP = {"AutoConfig": "configuration_hstl.HSTLConfig", "AutoModel": "modeling_hstl.HSTLModel"}

ALLOWED_IMPORTS = frozenset({"torch", "transformers", "torchcrf", "__future__", "abc", "bisect", "collections",
                             "dataclasses", "enum", "functools", "itertools", "math", "re", "typing"})
"""Top-level modules remote code may import: the model stack and pure-computation parts of the standard library."""
FORBIDDEN_CALLS = frozenset({"exec", "eval", "compile", "__import__", "breakpoint", "input"})
FORBIDDEN_METHODS = frozenset({"write_text", "write_bytes", "mkdir", "unlink", "rmdir", "rmtree", "save_pretrained",
                               "push_to_hub", "to_json_file", "urlopen", "hf_hub_download", "snapshot_download",
                               "upload_file", "upload_folder"})
"""Method names that write files or reach the network; `torch.save` is checked on its own."""


# ---------------------------------------------------------------------------------------------------------------------
# Checking remote code


def _import_problems(node: ast.AST, sibling_modules: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0:
        names = [node.module or ""]
    elif isinstance(node, ast.ImportFrom):
        module = (node.module or "").split(".")[0]
        return [] if module in sibling_modules else [f"relative import of {module!r}, which is not shipped beside it"]
    else:
        return []
    # A sibling may also be imported by its top-level name: the fallback used when the files are installed as modules.
    allowed = ALLOWED_IMPORTS | sibling_modules
    return [f"import of {name!r}" for name in names if name.split(".")[0] not in allowed]


def _call_problem(node: ast.Call) -> str | None:
    function = node.func
    if isinstance(function, ast.Name) and function.id in FORBIDDEN_CALLS:
        return f"call of {function.id}()"
    if isinstance(function, ast.Name) and function.id == "open":
        mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
        if mode is not None and not (isinstance(mode, ast.Constant) and set(str(mode.value)) <= set("rbt")):
            return "open() for writing (or with a mode that is not a constant)"
    if isinstance(function, ast.Attribute):
        if function.attr in FORBIDDEN_METHODS:
            return f"call of .{function.attr}()"
        if function.attr == "save" and isinstance(function.value, ast.Name) and function.value.id == "torch":
            return "call of torch.save()"
    return None


def remote_code_problems(path: str | Path, sibling_modules: set[str] | None = None) -> list[str]:
    """What makes a remote-code file unsafe to ship: imports beyond torch, transformers, torchcrf, its siblings and a
    few pure standard-library modules; exec/eval/compile/__import__; file writes; network calls.

    Args:
        path: a Python file.
        sibling_modules: module names shipped beside it (default: the `.py` files of its folder).

    Returns:
        `"FILE:LINE: problem"` strings; empty when the file is clean.
    """
    path = Path(path)
    if sibling_modules is None:
        sibling_modules = {other.stem for other in path.parent.glob("*.py")}
    problems = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        found = _import_problems(node, sibling_modules)
        if isinstance(node, ast.Call):
            problem = _call_problem(node)
            found += [problem] if problem else []
        problems.extend(f"{path}:{node.lineno}: {problem}" for problem in found)
    return problems


# ---------------------------------------------------------------------------------------------------------------------
# Assembling the repository folder


def remote_code_files() -> list[Path]:
    """The package's model and pipeline files and every module they import relatively, recursively.

    Found the way transformers finds what a remote-code file needs, so the folder holds exactly what loading needs.
    """
    from transformers.dynamic_module_utils import get_relative_import_files

    import modeling_hstl, pipeline_hstl

    entry_points = [Path(modeling_hstl.__file__), Path(pipeline_hstl.__file__)]
    needed = {Path(name) for entry_point in entry_points for name in get_relative_import_files(entry_point)}
    return sorted(set(entry_points) | needed)


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


def _write_config(model_dir: Path, out_dir: Path) -> None:
    """config.json plus `auto_map`, the `hstl-ner` custom pipeline and the training run's window settings."""
    from pipeline_hstl import custom_pipelines_entry

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "hstl":
        raise PublishError(f"{model_dir / 'config.json'}: expected model_type 'hstl', got {config.get('model_type')!r}")
    config["auto_map"] = {**config.get("auto_map", {}), **AUTO_MAP}
    config["custom_pipelines"] = custom_pipelines_entry()
    # The pipeline cannot read run_config.yaml (remote code imports no YAML parser), yet it should window text as
    # predict.py does, with the training run's settings: they travel in config.json, which the model loads anyway.
    run_config_path = model_dir / "run_config.yaml"
    if run_config_path.is_file():
        training = (yaml.safe_load(run_config_path.read_text(encoding="utf-8")) or {}).get("training") or {}
        for config_key, training_key in (("window_max_length", "max_length"), ("window_overlap", "window_overlap")):
            if training_key in training:
                config[config_key] = training[training_key]
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


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
    for source in remote_code_files():
        shutil.copyfile(source, out_dir / source.name)
    problems = [problem for path in out_dir.glob("*.py") for problem in remote_code_problems(path)]
    if problems:
        raise PublishError("remote code that must not be published: " + "; ".join(problems))
    _write_config(model_dir, out_dir)
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
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    commit = api.upload_folder(
        folder_path=str(folder), repo_id=repo_id, repo_type="model", commit_message=commit_message, revision=revision,
        ignore_patterns=["checkpoints/**", "tokenizer/**", "*.incomplete/**", "runs/**", "best_model/**"],
    )
    return str(getattr(commit, "commit_url", commit))


def publish_model(model_dir: str | Path, repo_id: str, *, results=None, token: str | None = None,
                  private: bool = False, commit_message: str = "Upload HSTL model") -> str:
    """Assembles the Hub folder of a model (remote code, pipeline, weights, tokenizer, card) and uploads it; the
    one path used by `publish.py` and by `--push_to_hub` in train.py and finetune.py. Returns the commit URL."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hstl-publish-") as staging:
        repo_dir = Path(staging) / "repo"
        assemble_model_repo(model_dir, repo_dir, repo_id, results)
        return push_model_folder(repo_dir, repo_id, token=token, private=private, commit_message=commit_message)
