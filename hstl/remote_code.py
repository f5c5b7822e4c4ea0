"""What every HSTL model folder needs to load as Hub remote code, in one place.

The remote-code group is the `*_hstl.py` files at the repository root (`GROUP_MODULES`); `complete_model_folder`
copies them into a folder that `save_pretrained` wrote and adds to its config.json the `auto_map` of `AutoConfig`,
`AutoModel` and `AutoModelForTokenClassification` and the `custom_pipelines` of `"token-classification"` (with its
aliases, `"ner"`) and `"hstl-ner"`; `model.save_pretrained` and the pipeline's `save_pretrained` write the same
(the model imports the pipeline, so transformers copies the whole group). `train.py`, `finetune.py` (through
`hstl.checkpointing.save_model_folder`) and `publish.py` (through `hstl.hub`) all call it, so each folder they write
is a complete Hub repository. `remote_code_problems` is the static check that the shipped code imports only what
remote code may import and neither touches the network, evaluates strings nor writes files.
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path


GROUP_MODULES = ("configuration_hstl", "entity_types_hstl", "labels_hstl", "mentions_hstl", "modeling_hstl",
                 "pipeline_hstl", "text_hstl", "windows_hstl")
"""The remote-code group: top-level modules of the installed package, shipped as files in every model folder."""
ALLOWED_IMPORTS = frozenset({"torch", "transformers", "torchcrf", "__future__", "abc", "array", "bisect",
                             "collections", "dataclasses", "enum", "functools", "itertools", "math", "re", "typing"})
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
# Completing a model folder


def remote_code_files() -> list[Path]:
    """The files of the remote-code group, after checking that the group is closed: every relative import of its
    files (found the way transformers finds them) is a file of the group."""
    import importlib

    from transformers.dynamic_module_utils import get_relative_import_files

    files = [Path(importlib.import_module(name).__file__) for name in GROUP_MODULES]
    needed = {Path(name) for path in files for name in get_relative_import_files(path)}
    assert needed <= set(files), f"the remote-code group imports files outside it: {sorted(needed - set(files))}"
    return sorted(files)


def custom_pipelines() -> dict[str, dict]:
    """The `custom_pipelines` value of config.json (see `pipeline_hstl.custom_pipelines_entry`)."""
    from pipeline_hstl import custom_pipelines_entry

    return custom_pipelines_entry()


def complete_model_folder(folder: str | Path) -> None:
    """Copies the remote-code group into `folder` (which holds a saved HSTL config.json) and writes `auto_map` and
    `custom_pipelines` into its config.json, so that the Auto classes and `pipeline(..., trust_remote_code=True)`
    load it without the `hstl` package.

    Raises:
        ValueError: naming the file, when `folder/config.json` is missing or not an HSTL config.
    """
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{config_path}: expected the config.json of a saved HSTL model, got no such file")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("model_type") != "hstl":
        raise ValueError(f"{config_path}: expected model_type 'hstl', got {config.get('model_type')!r}")
    from modeling_hstl import AUTO_MAP  # here, not at import: commands check their arguments before loading torch

    for source in remote_code_files():
        shutil.copyfile(source, folder / source.name)
    config["auto_map"] = {**config.get("auto_map", {}), **AUTO_MAP}
    config["custom_pipelines"] = custom_pipelines()
    # As transformers writes config.json (sorted keys, indent 2), so that a re-save does not reorder it.
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
