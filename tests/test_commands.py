"""The console scripts of pyproject.toml: each names a package function that runs from any directory, and the
scripts at the repository root are thin wrappers over the same functions."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {
    "hstl-train": "train.py", "hstl-finetune": "finetune.py", "hstl-predict": "predict.py", "hstl-score": "eval/score.py",
    "hstl-evaluate": "eval/evaluate_model.py", "hstl-compare": "eval/compare.py", "hstl-publish": "publish.py",
}
"""Console script -> the repository script that wraps the same function."""


def console_scripts() -> dict[str, str]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]


def test_every_console_script_shows_its_help_from_another_directory(tmp_path):
    """One fresh interpreter, started in an empty folder with the repository on the path only for the package (as an
    install gives it), resolves each entry point and runs it with --help: exit status 0, a usage line under the
    command's name, and no repository script (`eval`, `train`, ...) imported on the way."""
    scripts = console_scripts()
    assert set(scripts) == set(COMMANDS)
    program = (
        "import importlib, sys\n"
        f"for name, target in {sorted(scripts.items())!r}:\n"
        "    module, function = target.split(':')\n"
        "    try:\n"
        "        getattr(importlib.import_module(module), function)(['--help'])\n"
        "    except SystemExit as stop:\n"
        "        assert stop.code == 0, (name, stop.code)\n"
        "    print('ran', name, flush=True)\n"
        "scripts = [m for m in sys.modules if m.split('.')[0] in ('eval', 'train', 'finetune', 'predict', 'publish')]\n"
        "assert not scripts, f'the commands import repository scripts: {scripts}'\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(REPO)}  # the package; the repository scripts must not be needed
    completed = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, env=environment, capture_output=True,
                               text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    for name in scripts:
        assert f"usage: {name} " in completed.stdout and f"ran {name}\n" in completed.stdout, name


def test_repository_scripts_call_the_console_scripts_functions():
    sys.path.insert(0, str(REPO))
    try:
        for name, target in console_scripts().items():
            module_name, function = target.split(":")
            script = COMMANDS[name].removesuffix(".py").replace("/", ".")
            wrapper = importlib.import_module(script)
            assert wrapper.main is getattr(importlib.import_module(module_name), function), name
            source = (REPO / COMMANDS[name]).read_text(encoding="utf-8")
            assert "argparse" not in source and "def " not in source, f"{COMMANDS[name]} should stay a thin wrapper"
    finally:
        sys.path.remove(str(REPO))
