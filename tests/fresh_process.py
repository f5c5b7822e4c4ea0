"""Running code in a fresh Python process where the HSTL repository cannot be imported: the one helper that remote-code
tests share (a model folder, an `evaluate` metric folder must then bring everything they need)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

BLOCKED_MODULES = ("hstl", "configuration_hstl", "entity_types_hstl", "labels_hstl", "mentions_hstl", "modeling_hstl",
                   "pipeline_hstl", "text_hstl", "windows_hstl", "train", "finetune", "predict", "publish", "eval")
"""The package, the top-level copies of the remote-code group and the repository's scripts."""
TRUST_PROMPT = "Do you wish to run the custom code?"
"""What transformers asks on a terminal when remote code is loaded without `trust_remote_code`."""

_PREAMBLE = f'''
import importlib.abc, sys

class BlockHSTL(importlib.abc.MetaPathFinder):
    # hstl may be installed (editable) in this environment: only the folder's own files may do the work.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED_MODULES!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)")
        return None

sys.meta_path.insert(0, BlockHSTL())
try:
    import hstl
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("hstl was importable")
'''


def run_without_hstl(script: str, args: list[str], workdir: Path, timeout: int = 300) -> Any:
    """Runs the Python source `script` with `args` in a fresh isolated interpreter (`-I`: no PYTHONPATH, no user
    site, not the repository's folder), in `workdir`, offline and with its own empty Hugging Face cache, after
    blocking `BLOCKED_MODULES`. No call may ask whether to trust remote code (stdin is closed). The script prints
    one JSON value as its last line of output; returns it."""
    workdir.mkdir(parents=True, exist_ok=True)
    script_path = workdir / "fresh_process_script.py"
    script_path.write_text(_PREAMBLE + script, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "ACCELERATE_", "HF_"))}
    # Thread settings are inherited: the same thread count gives the same float sums, so results compare exactly.
    env.update(HF_HOME=str(workdir / "hf_home"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    completed = subprocess.run([sys.executable, "-I", str(script_path), *args], cwd=workdir, env=env,
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert TRUST_PROMPT not in completed.stdout + completed.stderr, "a call asked whether to trust remote code"
    return json.loads(completed.stdout.strip().splitlines()[-1])
