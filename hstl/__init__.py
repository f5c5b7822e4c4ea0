"""HSTL: hierarchical shared transfer learning for biomedical named entity recognition (Chai et al., 2022).

The model classes are imported lazily, so that `import hstl.data` or `python -m eval.score` do not pay for torch and
transformers.
"""

import importlib
from typing import Any


__version__ = "0.1.0"

_LAZY = {
    "HSTLConfig": "configuration_hstl",
    "HSTLForTokenClassification": "modeling_hstl",
    "HSTLModel": "modeling_hstl",
    "HSTLMultiTaskTaggingOutput": "modeling_hstl",
    "HSTLPreTrainedModel": "modeling_hstl",
    "HSTLTokenClassificationOutput": "modeling_hstl",
    "HSTLTokenClassifierOutput": "modeling_hstl",
    "viterbi_decode": "modeling_hstl",
    "viterbi_decode_heads": "modeling_hstl",
    "crf_marginals": "modeling_hstl",
    "crf_marginals_heads": "modeling_hstl",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        # The model files are top-level modules (the remote-code group at the repository root), not part of `hstl`.
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hstl' has no attribute {name!r}")
