"""The autoregressive baseline: the same transformer blocks with causal attention and no noise input,
predicting each token from the ones before it.

Legend: B batch, T positions in this call, V vocabulary size (data tokens + BOS), D hidden size.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import torch
import torch.nn as nn
from torch import Tensor

from ..errors import InputError
from .attention import KVCache
from .layers import LayerNorm, RotaryTables
from .transformer import DiTBlock, ModelConfig, init_normal, require_dit


class CausalTransformer(nn.Module):
    """A next-token model over ``vocab_size - 1`` data tokens; token ``bos_id = vocab_size - 1`` starts every
    sequence, so the first data token is predicted too and ``-log p(x)`` covers the whole window.

    ``forward(tokens, cache)`` with ``tokens`` int64 (B, T) returns float32 (B, T, V) log-probabilities of the
    next token (``-inf`` at BOS, which never follows). With a ``KVCache`` the tokens continue the cached ones.

    Args:
        config (ModelConfig): architecture; ``cond_dim``, ``scale_by_sigma`` and ``time_conditioning`` are unused.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.vocab_size < 2:
            raise InputError(f"vocab_size must be >= 2 (data tokens + BOS); got {config.vocab_size}")
        self.config = config
        self.bos_id = config.vocab_size - 1
        self.build_layers(config)
        self.reset_parameters()

    def build_layers(self, config: ModelConfig) -> None:
        """The embedding, the causal blocks, the final norm and the output map, and the rotary tables."""
        require_dit(config)
        self.vocab_embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.blocks = nn.ModuleList(DiTBlock(config, conditioned=False, causal=True) for _ in range(config.n_blocks))
        self.norm_final = LayerNorm(config.hidden_size)
        self.linear = nn.Linear(config.hidden_size, config.vocab_size)
        self.rotary = RotaryTables(config.hidden_size // config.n_heads, config.seq_len)

    def reset_parameters(self) -> None:
        """GPT-2's initialisation: normal(0.02), residual projections scaled by 1 / sqrt(2 n_blocks)."""
        init_normal(self, self.vocab_embed)
        residual_std = 0.02 / math.sqrt(2 * max(1, self.config.n_blocks))
        for block in self.blocks:
            nn.init.normal_(block.attn_out.weight, std=residual_std)
            nn.init.normal_(block.mlp[2].weight, std=residual_std)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def new_cache(self, batch_size: int, max_len: int, device=None, dtype=None) -> KVCache:
        """An empty cache for ``batch_size`` sequences of up to ``max_len`` positions, in the weights' dtype."""
        return KVCache.for_model(self.config, batch_size, max_len, dtype or self.vocab_embed.weight.dtype, device)

    def forward(self, tokens: Tensor, cache: KVCache | None = None) -> Tensor:
        """``tokens`` int64 (B, T), after those ``cache`` holds (None: from position 0), to float32 (B, T, V)
        next-token log-probabilities; ``cache`` advances by T."""
        start = cache.length if cache is not None else 0
        x = self.vocab_embed(tokens)  # (B, T, D)
        cos, sin = self.rotary(tokens.shape[1], start)
        for index, block in enumerate(self.blocks):
            x = block(x, None, cos, sin, cache, index)
        if cache is not None:
            cache.advance(tokens.shape[1])
        logits = self.head(x).float()  # (B, T, V)
        logits = logits.index_fill(-1, torch.tensor([self.bos_id], device=logits.device), -torch.inf)
        return logits.log_softmax(-1)

    def head(self, x: Tensor) -> Tensor:
        """The last hidden states (B, T, D) to next-token logits (B, T, V)."""
        return self.linear(self.norm_final(x))

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())
