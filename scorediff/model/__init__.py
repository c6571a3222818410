"""The score network: the SEDD diffusion transformer, its presets and the reader of original checkpoints."""

from .convert import convert_state_dict, is_original_config, original_components, read_original_checkpoint
from .transformer import ModelConfig, SEDDTransformer

__all__ = [
    "ModelConfig",
    "SEDDTransformer",
    "convert_state_dict",
    "is_original_config",
    "original_components",
    "read_original_checkpoint",
]
