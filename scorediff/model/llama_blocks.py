"""The layers of the llama backbone (``llama.py`` builds its networks from them): grouped-query attention with
rotary positions and optional q/k norms, the pre-RMSNorm block with a SwiGLU MLP, and the output norm and head.
A conditioned block or head is modulated around one rather than zero (``llama``'s module docstring says why)."""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .attention import KVCache, attend
from .config import ModelConfig
from .layers import RMSNorm, SwiGLU, apply_rotary, modulate


class LlamaAttention(nn.Module):
    """Grouped-query attention with rotary positions: ``H`` query heads share ``G`` key/value heads."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        dim = config.hidden_size
        self.n_heads, self.kv_heads, self.head_size = config.n_heads, config.kv_heads, config.head_size
        self.q_proj = nn.Linear(dim, self.n_heads * self.head_size, bias=config.qkv_bias)
        self.k_proj = nn.Linear(dim, self.kv_heads * self.head_size, bias=config.qkv_bias)
        self.v_proj = nn.Linear(dim, self.kv_heads * self.head_size, bias=config.qkv_bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_size, dim, bias=False)
        if config.qk_norm:
            self.q_norm = RMSNorm(self.head_size, config.norm_eps)
            self.k_norm = RMSNorm(self.head_size, config.norm_eps)

    def forward(
        self,
        h: Tensor,
        cos: Tensor,
        sin: Tensor,
        cache: KVCache | None,
        index: int,
        mask: Tensor | None,
        queries: int | None,
        causal: bool,
        dropout: float,
    ) -> Tensor:
        """(B, L, D) -> (B, Q, D), ``Q`` the first ``queries`` positions (all of them serve as keys and values);
        the rest as ``attention.attend`` takes it."""
        batch_size, seq_len, _ = h.shape
        q = self.q_proj(h[:, :queries]).view(batch_size, -1, self.n_heads, self.head_size)  # (B, Q, H, K)
        k = self.k_proj(h).view(batch_size, seq_len, self.kv_heads, self.head_size)  # (B, L, G, K)
        v = self.v_proj(h).view(batch_size, seq_len, self.kv_heads, self.head_size)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, heads, positions, K)
        q, k = apply_rotary(q, cos[: q.shape[2]], sin[: q.shape[2]]), apply_rotary(k, cos, sin)
        attn = attend(q, k, v, causal=causal, mask=mask, cache=cache, index=index, dropout=dropout)
        return self.o_proj(attn.transpose(1, 2).reshape(batch_size, q.shape[2], -1))  # (B, Q, D)


class LlamaBlock(nn.Module):
    """Pre-RMSNorm attention and SwiGLU MLP; ``conditioned``: modulated around one by ``c`` (module docstring)."""

    def __init__(self, config: ModelConfig, conditioned: bool = False, causal: bool = False):
        super().__init__()
        dim = config.hidden_size
        self.causal = causal
        self.dropout = config.dropout
        self.input_layernorm = RMSNorm(dim, config.norm_eps)
        self.self_attn = LlamaAttention(config)
        self.post_attention_layernorm = RMSNorm(dim, config.norm_eps)
        self.mlp = SwiGLU(dim, config.mlp_size)
        if conditioned:
            self.adaLN_modulation = nn.Linear(config.cond_dim, 6 * dim)

    def forward(
        self,
        x: Tensor,
        c: Tensor | None,
        cos: Tensor,
        sin: Tensor,
        cache: KVCache | None = None,
        index: int = 0,
        mask: Tensor | None = None,
        queries: int | None = None,
    ) -> Tensor:
        """``DiTBlock.forward``'s contract: ``x`` (B, L, D), ``c`` (B, C) or None, ``mask`` bool (L, S) or None,
        ``queries`` the first positions to compute (None: all); returns (B, Q, D)."""
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = (
            self.adaLN_modulation(c).chunk(6, dim=-1) if c is not None else (None,) * 6
        )
        dropout = self.dropout if self.training else 0.0
        mask = None if mask is None else mask[:queries]
        h = _modulated(self.input_layernorm(x), shift_a, scale_a)
        h = self.self_attn(h, cos, sin, cache, index, mask, queries, self.causal, dropout)
        x = x[:, :queries] + _gated(F.dropout(h, dropout, self.training), gate_a)
        h = self.mlp(_modulated(self.post_attention_layernorm(x), shift_m, scale_m))
        return x + _gated(F.dropout(h, dropout, self.training), gate_m)


def _modulated(h: Tensor, shift: Tensor | None, scale: Tensor | None) -> Tensor:
    return h if shift is None else modulate(h, shift, scale)


def _gated(h: Tensor, gate: Tensor | None) -> Tensor:
    return h if gate is None else h * (1 + gate[:, None])


class LlamaOutput(nn.Module):
    """Final RMSNorm (modulated when conditioned) and the map to logits, no bias; with ``tie_embeddings`` the map
    is the token embedding's own weight, held by reference so that the state dict names it once."""

    def __init__(self, config: ModelConfig, embedding: nn.Embedding, conditioned: bool):
        super().__init__()
        self.norm = RMSNorm(config.hidden_size, config.norm_eps)
        self.vocab_size = config.vocab_size
        if config.tie_embeddings:
            self.tied = (embedding,)  # a tuple: not registered as a submodule
        else:
            self.linear = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if conditioned:
            self.adaLN_modulation = nn.Linear(config.cond_dim, 2 * config.hidden_size)

    def forward(self, x: Tensor, c: Tensor | None) -> Tensor:
        """Hidden states ``x`` float (B, L, D), the conditioning ``c`` (B, C) or None, to logits (B, L, V)."""
        h = self.norm(x)
        if c is not None:
            shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
            h = modulate(h, shift, scale)
        if not hasattr(self, "tied"):
            return self.linear(h)  # (B, L, V); the module is called, so a LoRA adapter wrapped around it runs
        # a shifted network's embedding has a BOS row past the vocabulary, which is never an output
        return F.linear(h, self.tied[0].weight[: self.vocab_size])  # (B, L, V)
