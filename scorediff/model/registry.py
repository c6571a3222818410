"""Which network class an objective gets for ``model.arch``: the one place that maps (kind, arch) to a class."""

from __future__ import annotations

from typing import Literal

from torch import nn

from ..errors import InputError
from .block_diffusion import BlockDiffusionTransformer
from .causal import CausalTransformer
from .config import ModelConfig
from .llama import LlamaBlockDiffusionTransformer, LlamaCausalTransformer, LlamaTransformer
from .shifted_block import ShiftedBlockDiffusionTransformer
from .transformer import SEDDTransformer

NetworkKind = Literal["diffusion", "block_diffusion", "autoregressive"]

NETWORKS: dict[tuple[str, str], type[nn.Module]] = {
    ("diffusion", "dit"): SEDDTransformer,
    ("diffusion", "llama"): LlamaTransformer,
    ("block_diffusion", "dit"): BlockDiffusionTransformer,
    ("block_diffusion", "llama"): LlamaBlockDiffusionTransformer,
    ("autoregressive", "dit"): CausalTransformer,
    ("autoregressive", "llama"): LlamaCausalTransformer,
}


def build_network(kind: NetworkKind, config: ModelConfig, mask_id: int | None = None) -> nn.Module:
    """The network of ``kind`` with the backbone ``config.arch``, freshly initialised.

    Args:
        kind: ``diffusion`` (log scores, ``forward(x_t, sigma_bar, label)``), ``block_diffusion``
            (``forward(x_t, x_0, label)`` and a KV cache) or ``autoregressive`` (``forward(tokens, cache)``).
        config (ModelConfig): the architecture, its ``vocab_size`` set.
        mask_id (int | None): the absorbing graph's mask state (diffusion kinds only).
    """
    network = NETWORKS.get((kind, config.arch))
    if kind == "block_diffusion" and config.shift:  # only a llama has model.shift (ModelConfig checks)
        network = ShiftedBlockDiffusionTransformer
    if network is None:
        kinds = sorted({k for k, _ in NETWORKS})
        raise InputError(f"no network of kind {kind!r} and arch {config.arch!r}; kinds: {', '.join(kinds)}")
    return network(config) if kind == "autoregressive" else network(config, mask_id)
