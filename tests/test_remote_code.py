"""The remote-code group: the `*_hstl.py` files at the repository root are exactly what every model folder ships, and
they import only torch, transformers, torchcrf, each other and a few pure standard-library modules."""

from __future__ import annotations

import ast
from pathlib import Path

from hstl.remote_code import GROUP_MODULES, remote_code_files, remote_code_problems


REPO_ROOT = Path(__file__).resolve().parents[1]
GROUP = {"configuration_hstl.py", "entity_types_hstl.py", "labels_hstl.py", "mentions_hstl.py", "modeling_hstl.py",
         "pipeline_hstl.py", "text_hstl.py", "windows_hstl.py"}


def test_the_group_is_the_root_files_named_hstl_and_nothing_else():
    assert {path.name for path in REPO_ROOT.glob("*_hstl.py")} == GROUP
    assert not list((REPO_ROOT / "hstl").glob("*_hstl.py")), "a second copy of a remote-code file in the package"
    assert {path.name for path in remote_code_files()} == GROUP == {f"{name}.py" for name in GROUP_MODULES}
    assert {path.parent for path in remote_code_files()} == {REPO_ROOT}


def test_the_group_imports_only_the_model_stack_and_each_other():
    for path in sorted(REPO_ROOT.glob("*_hstl.py")):
        assert remote_code_problems(path, sibling_modules={name[:-3] for name in GROUP}) == [], path.name


def test_each_sibling_import_works_both_as_remote_code_and_as_an_installed_module():
    # Remote code needs `from .x import` (transformers copies the files it finds that way); the installed package needs
    # `from x import`. Each relative import sits in a `try` whose `except ImportError` imports the same names plainly.
    for path in sorted(REPO_ROOT.glob("*_hstl.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Try):
                continue
            relative = [item for item in node.body if isinstance(item, ast.ImportFrom) and item.level == 1]
            if not relative:
                continue
            (handler,) = node.handlers
            plain = [item for item in handler.body if isinstance(item, ast.ImportFrom) and item.level == 0]
            assert [(item.module, [a.name for a in item.names]) for item in relative] == \
                   [(item.module, [a.name for a in item.names]) for item in plain], path.name
        relative_outside_try = [
            node for node in ast.parse(path.read_text(encoding="utf-8")).body
            if isinstance(node, ast.ImportFrom) and node.level == 1
        ]
        assert relative_outside_try == [], f"{path.name}: a relative import outside try breaks the installed module"
