"""The networks: the SEDD diffusion transformer, the causal (autoregressive) baseline built from the same
blocks, and the block diffusion network."""

from .attention import KVCache
from .block_diffusion import BlockDiffusionTransformer
from .causal import CausalTransformer
from .flops import training_flops_per_token
from .transformer import ModelConfig, SEDDTransformer

__all__ = [
    "BlockDiffusionTransformer",
    "CausalTransformer",
    "KVCache",
    "ModelConfig",
    "SEDDTransformer",
    "training_flops_per_token",
]
