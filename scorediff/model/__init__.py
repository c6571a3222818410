"""The networks: the SEDD diffusion transformer, the causal (autoregressive) baseline built from the same
blocks, and the reader of original SEDD checkpoints."""

from .attention import KVCache
from .block_diffusion import BlockDiffusionTransformer
from .causal import CausalTransformer
from .convert import convert_state_dict, is_original_config, original_components, read_original_checkpoint
from .flops import training_flops_per_token
from .transformer import ModelConfig, SEDDTransformer

__all__ = [
    "BlockDiffusionTransformer",
    "CausalTransformer",
    "KVCache",
    "ModelConfig",
    "SEDDTransformer",
    "convert_state_dict",
    "is_original_config",
    "original_components",
    "read_original_checkpoint",
    "training_flops_per_token",
]
