"""Using a trained model: `loading` (a model folder, its heads and window settings), `tagging` (sentences in, labels
out, batched and windowed), `merging` (one sentence's mentions from several heads), `feed` (workers ahead of the
model, a writer behind it) and `streaming` (whole files, resumable; the engine of `predict.py`). File formats live in `hstl.formats`.

Names are imported lazily, so that `import hstl.inference.merging` does not pay for torch.
"""

import importlib
from typing import Any

_LAZY = {
    "build_task_dataset": "tagging",
    "predict_labels": "tagging",
    "predict_windows": "tagging",
    "tag_sentences": "tagging",
    "tag_sentences_with_marginals": "tagging",
    "load_model_and_tokenizer": "loading",
    "window_settings": "loading",
    "WindowSettings": "loading",
    "predict_file": "streaming",
    "PredictionOptions": "streaming",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'hstl.inference' has no attribute {name!r}")
