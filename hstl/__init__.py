"""HSTL: hierarchical shared transfer learning for biomedical named entity recognition (Chai et al., 2022)."""

from .configuration_hstl import ENTITY_FAMILIES, HSTLConfig
from .modeling_hstl import (
    HSTLModel,
    HSTLMultiTaskTaggingOutput,
    HSTLPreTrainedModel,
    HSTLTokenClassifierOutput,
    viterbi_decode,
)

# `save_pretrained` then writes `auto_map` into config.json and copies the two remote-code files beside the weights, so
# that `AutoModel.from_pretrained(folder, trust_remote_code=True)` works without this package installed.
HSTLConfig.register_for_auto_class()
HSTLModel.register_for_auto_class("AutoModel")

__version__ = "0.1.0"

__all__ = [
    "ENTITY_FAMILIES",
    "HSTLConfig",
    "HSTLModel",
    "HSTLMultiTaskTaggingOutput",
    "HSTLPreTrainedModel",
    "HSTLTokenClassifierOutput",
    "viterbi_decode",
]
