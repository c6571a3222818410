"""The networks: the SEDD diffusion transformer, the causal (autoregressive) baseline built from the same
blocks, and the block diffusion network, each with a DiT or a LLaMA-style backbone (``model.arch``);
``build_network`` picks the class."""

from .attention import KVCache
from .block_diffusion import BlockDiffusionTransformer
from .causal import CausalTransformer
from .config import ModelConfig
from .flops import training_flops_per_token
from .llama import LlamaBlockDiffusionTransformer, LlamaCausalTransformer, LlamaTransformer
from .registry import build_network
from .transformer import SEDDTransformer

__all__ = [
    "BlockDiffusionTransformer",
    "CausalTransformer",
    "KVCache",
    "LlamaBlockDiffusionTransformer",
    "LlamaCausalTransformer",
    "LlamaTransformer",
    "ModelConfig",
    "SEDDTransformer",
    "build_network",
    "training_flops_per_token",
]
