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
    "hstl-data-efficiency": "eval/data_efficiency.py",
}
"""Console script -> the repository script that wraps the same function."""


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def installed_layout(folder: Path) -> dict[str, str]:
    """`folder` made to hold what `pip install` puts on the path (symbolic links to the packages and modules
    pyproject.toml lists, nothing else of the repository); returns an environment whose PYTHONPATH is `folder`."""
    setuptools = pyproject()["tool"]["setuptools"]
    top_level = {name.split(".")[0] for name in setuptools.get("packages", [])}
    modules = {f"{name}.py" for name in setuptools.get("py-modules", [])}
    for name in sorted(top_level | modules):
        (folder / name).symlink_to(REPO / name)
    return {**os.environ, "PYTHONPATH": str(folder)}


def test_every_console_script_shows_its_help_from_another_directory(tmp_path):
    """One fresh interpreter, started in an empty folder with only the installed files on its path, resolves each
    entry point and runs it with --help: exit status 0 and a usage line under the command's name."""
    scripts = pyproject()["project"]["scripts"]
    assert set(scripts) == set(COMMANDS)
    (tmp_path / "site").mkdir()
    (tmp_path / "work").mkdir()
    program = (
        "import importlib\n"
        f"for name, target in {sorted(scripts.items())!r}:\n"
        "    module, function = target.split(':')\n"
        "    try:\n"
        "        getattr(importlib.import_module(module), function)(['--help'])\n"
        "    except SystemExit as stop:\n"
        "        assert stop.code == 0, (name, stop.code)\n"
        "    print('ran', name, flush=True)\n"
    )
    completed = subprocess.run([sys.executable, "-c", program], cwd=tmp_path / "work",
                               env=installed_layout(tmp_path / "site"), capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    for name in scripts:
        assert f"usage: {name} " in completed.stdout and f"ran {name}\n" in completed.stdout, name


def test_score_command_works_from_another_directory(tmp_path):
    """`hstl-score` does real work outside the repository: the scores of a file against itself."""
    (tmp_path / "site").mkdir()
    gold = tmp_path / "gold.tsv"
    gold.write_text("IL-2\tB-protein\ngene\tI-protein\n\nT\tO\n\n", encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, "-c", "import sys; from hstl.commands.score import main; sys.exit(main())", "gold.tsv",
         "gold.tsv"],
        cwd=tmp_path, env=installed_layout(tmp_path / "site"), capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert '"f1": 1.0' in completed.stdout and '"num_gold": 1' in completed.stdout


def test_repository_scripts_call_the_console_scripts_functions():
    sys.path.insert(0, str(REPO))
    try:
        for name, target in pyproject()["project"]["scripts"].items():
            module_name, function = target.split(":")
            script = COMMANDS[name].removesuffix(".py").replace("/", ".")
            wrapper = importlib.import_module(script)
            assert wrapper.main is getattr(importlib.import_module(module_name), function), name
            source = (REPO / COMMANDS[name]).read_text(encoding="utf-8")
            assert "argparse" not in source and "def " not in source, f"{COMMANDS[name]} should stay a thin wrapper"
    finally:
        sys.path.remove(str(REPO))
