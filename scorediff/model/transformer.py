"""The SEDD diffusion transformer (DiT): bidirectional attention with rotary positions and adaLN-zero
conditioning on the total noise ``sigma_bar``, producing log concrete scores.

Legend: B batch, L sequence length, V vocabulary size (with the mask), D hidden size, C conditioning
size, H heads, K head size (D / H).
"""

from __future__ import annotations

import math
from dataclasses import asdict

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from ..graphs.absorbing import AbsorbingGraph
from ..graphs.base import expm1_stable
from .attention import KVCache, StaleKVCache, attend
from .config import ModelConfig
from .layers import LayerNorm, NoiseEmbedding, RotaryTables, TanhGELU, apply_rotary, modulate


def require_dit(config: ModelConfig) -> None:
    """A DiT network (this one, or the autoregressive one of ``causal.py``) is built for ``model.arch=dit`` only."""
    if config.arch != "dit":
        raise InputError(f"a DiT network needs model.arch=dit; got {config.arch!r} (build_network picks the class)")


def init_normal(model: nn.Module, embedding: nn.Embedding) -> None:
    """Normal(0.02) weights and zero biases for every ``nn.Linear`` of ``model``, then normal(0.02) ``embedding``:
    the DiT's and the autoregressive model's start, before each zeroes or rescales its own layers."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    nn.init.normal_(embedding.weight, std=0.02)


class DiTBlock(nn.Module):
    """Pre-norm attention and MLP; with ``conditioned`` each is modulated (shift, scale) and gated by the noise
    embedding (adaLN-zero), without it the block is a plain pre-norm transformer block. ``causal`` attention
    lets a position see only itself and earlier ones (the autoregressive model)."""

    def __init__(self, config: ModelConfig, conditioned: bool = True, causal: bool = False):
        super().__init__()
        dim = config.hidden_size
        self.n_heads = config.n_heads
        self.dropout = config.dropout
        self.causal = causal
        self.norm1 = LayerNorm(dim, config.norm_bias)
        self.attn_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.attn_out = nn.Linear(dim, dim, bias=False)
        self.norm2 = LayerNorm(dim, config.norm_bias)
        self.mlp = nn.Sequential(
            nn.Linear(dim, config.mlp_ratio * dim),
            TanhGELU(),
            nn.Linear(config.mlp_ratio * dim, dim),
        )
        if conditioned:
            self.adaLN_modulation = nn.Linear(config.cond_dim, 6 * dim)

    def attention(
        self,
        h: Tensor,
        cos: Tensor,
        sin: Tensor,
        cache: KVCache | None,
        index: int,
        mask: Tensor | None = None,
        queries: int | None = None,
    ) -> Tensor:
        """Self-attention of the normed (and modulated) ``h``, float (B, L, D), rotated by ``cos``/``sin`` (L, K):
        (B, Q, D) for the first ``queries`` positions (None: all L), before the output map; ``mask`` as ``forward``
        takes it."""
        batch_size, seq_len, dim = h.shape
        qkv = self.attn_qkv(h).view(batch_size, seq_len, 3, self.n_heads, dim // self.n_heads)  # (B, L, 3, H, K)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, L, K)
        q, k = apply_rotary(q[:, :, :queries], cos[:queries], sin[:queries]), apply_rotary(k, cos, sin)
        mask = None if mask is None else mask[:queries]
        dropout = self.dropout if self.training else 0.0
        attn = attend(q, k, v, causal=self.causal, mask=mask, cache=cache, index=index, dropout=dropout)
        return attn.transpose(1, 2).reshape(batch_size, q.shape[2], dim)  # (B, L, D)

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
        """``mask``: bool (L, S) of the key positions each query may see (None: all, or the causal ones).
        ``queries``: compute only the first positions (all still serve as keys and values); None: all."""
        if c is None:
            h = self.attention(self.norm1(x), cos, sin, cache, index, mask, queries)
            x = x[:, :queries] + F.dropout(self.attn_out(h), self.dropout, self.training)
            return x + F.dropout(self.mlp(self.norm2(x)), self.dropout, self.training)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=-1)
        h = self.attention(modulate(self.norm1(x), shift_msa, scale_msa), cos, sin, cache, index, mask, queries)
        x = x[:, :queries] + gate_msa[:, None] * F.dropout(self.attn_out(h), self.dropout, self.training)
        h = modulate(self.norm2(x), shift_mlp, scale_mlp)
        return x + gate_mlp[:, None] * F.dropout(self.mlp(h), self.dropout, self.training)


class FinalLayer(nn.Module):
    """Modulated norm and a linear map to one logit per vocabulary entry."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.norm_final = LayerNorm(config.hidden_size, config.norm_bias)
        self.linear = nn.Linear(config.hidden_size, config.vocab_size)
        self.adaLN_modulation = nn.Linear(config.cond_dim, 2 * config.hidden_size)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """Hidden states ``x`` float (B, L, D) and the conditioning ``c`` (B, C) to logits (B, L, V)."""
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class SEDDTransformer(nn.Module):
    """Maps noised tokens and their noise level to log concrete scores.

    ``forward(x_t, sigma_bar)`` with ``x_t`` int64 (B, L) and ``sigma_bar`` float (B,) returns
    ``log_score`` float32 (B, L, V) with 0 at each current token: exactly a ``ScoreFn``.

    Args:
        config (ModelConfig): architecture.
        mask_id (int | None): the absorbing graph's mask state; required by ``scale_by_sigma`` and by
            ``time_conditioning=False``, whose parameterisations only make sense for that graph.
    """

    def __init__(self, config: ModelConfig, mask_id: int | None = None):
        super().__init__()
        if config.vocab_size < 2:
            raise InputError(f"vocab_size must be >= 2; got {config.vocab_size}")
        if mask_id is None and (config.scale_by_sigma or not config.time_conditioning):
            raise InputError("scale_by_sigma and time_conditioning=False need the absorbing graph (a mask_id)")
        self.config = config
        self.mask_id = mask_id
        self.build_layers(config)
        self.reset_parameters()

    def build_layers(self, config: ModelConfig) -> None:
        """The embedding, the noise (or constant) conditioning, the blocks, the output layer and rotary tables."""
        require_dit(config)
        self.vocab_embed = nn.Embedding(config.vocab_size, config.hidden_size)
        if config.time_conditioning:
            self.sigma_map = NoiseEmbedding(config.cond_dim)
        else:
            self.cond = nn.Parameter(torch.zeros(config.cond_dim))
        if config.num_labels:
            self.label_embed = nn.Embedding(config.num_labels + 1, config.cond_dim)  # the last row: the null label
        self.blocks = nn.ModuleList(DiTBlock(config) for _ in range(config.n_blocks))
        self.output_layer = FinalLayer(config)
        self.rotary = RotaryTables(config.hidden_size // config.n_heads, config.seq_len)

    @classmethod
    def from_config(cls, config: ModelConfig | dict, mask_id: int | None = None) -> SEDDTransformer:
        """Build from a ``ModelConfig`` or the dict of one (as saved in a checkpoint's ``config.json``)."""
        if isinstance(config, dict):
            config = ModelConfig(**config)
        return cls(config, mask_id)

    def reset_parameters(self) -> None:
        """Small normal weights; adaLN and the output layer start at zero (adaLN-zero)."""
        init_normal(self, self.vocab_embed)
        if self.config.num_labels:
            nn.init.normal_(self.label_embed.weight, std=0.02)
        for module in [*self.blocks, self.output_layer]:
            nn.init.zeros_(module.adaLN_modulation.weight)
            nn.init.zeros_(module.adaLN_modulation.bias)
        nn.init.zeros_(self.output_layer.linear.weight)
        nn.init.zeros_(self.output_layer.linear.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x_t: Tensor, sigma_bar: Tensor, label: Tensor | None = None) -> Tensor:
        """``label`` int64 (B,) of a conditional model (None: the null label, the unconditional model)."""
        return self.to_log_score(self.logits(x_t, sigma_bar, label), x_t, sigma_bar)

    @property
    def time_independent(self) -> bool:
        """Whether the output ignores the noise level (RADD): then ``clean_log_probs`` is the whole network."""
        return not self.config.time_conditioning

    def clean_log_probs(self, x_t: Tensor, label: Tensor | None = None) -> Tensor:
        """A time-independent network's ``log p_theta(x_0 = y | x_t)``, float32 (B, L, V), ``-inf`` at the mask."""
        if not self.time_independent:
            raise InputError("clean_log_probs needs a time-independent network (model.time_conditioning=false)")
        return self._token_log_probs(self.logits(x_t, None, label))

    def stale_cache(self, batch_size: int, seq_len: int) -> StaleKVCache:
        """An empty ``StaleKVCache`` of ``batch_size`` sequences of ``seq_len`` positions, for ``window_log_probs``."""
        weight = self.vocab_embed.weight
        return StaleKVCache.for_model(self.config, batch_size, seq_len, weight.dtype, weight.device)

    def window_log_probs(self, x_t: Tensor, cache: StaleKVCache, start: int = 0, stop: int | None = None) -> Tensor:
        """``clean_log_probs`` of the window ``start .. stop`` (None: the end) of the sequence ``x_t`` (B, L), whose
        other positions' keys and values ``cache`` holds, (B, stop - start, V); the window's own are written into
        ``cache``. With the whole sequence this is ``clean_log_probs``, and it fills ``cache``."""
        if not self.time_independent or self.config.num_labels:
            raise InputError("window_log_probs needs a time-independent, unconditional network")
        return self._token_log_probs(self._window_pass(x_t[:, start:stop], cache, start))

    def _window_pass(self, tokens: Tensor, cache: StaleKVCache, start: int) -> Tensor:
        """Raw outputs (B, T, V) of ``tokens`` at positions ``start .. start + T`` against ``cache``."""
        cache.length = start
        x = self.vocab_embed(tokens)  # (B, T, D)
        c = self.adaln_input(None, None, tokens.shape[0], x.dtype, tokens.device)
        cos, sin = self.rotary(tokens.shape[1], start)
        for index, block in enumerate(self.blocks):
            x = block(x, c, cos, sin, cache, index)
        return self.output_layer(x, c).float()

    def _token_log_probs(self, logits: Tensor) -> Tensor:
        return logits.index_fill(-1, torch.tensor([self.mask_id], device=logits.device), -torch.inf).log_softmax(-1)

    def logits(self, x_t: Tensor, sigma_bar: Tensor | None, label: Tensor | None = None) -> Tensor:
        """The raw outputs, float32 (B, L, V); ``sigma_bar`` (B,) is unused by a time-independent network."""
        x = self.vocab_embed(x_t)  # (B, L, D)
        c = self.adaln_input(sigma_bar, label, x_t.shape[0], x.dtype, x_t.device)
        cos, sin = self.rotary(x_t.shape[1])
        for block in self.blocks:
            x = block(x, c, cos, sin)
        return self.output_layer(x, c).float()  # (B, L, V)

    def adaln_input(self, sigma_bar: Tensor | None, label: Tensor | None, batch_size: int, dtype, device) -> Tensor:
        """What drives adaLN, (B, C): the noise embedding (or the constant of a time-independent network), plus
        the label's embedding in a conditional model."""
        if self.config.num_labels:
            return self._conditioning(sigma_bar, self._labels(label, batch_size, device)).to(dtype)
        if label is not None:
            raise InputError("this model is unconditional: it takes no label")
        if self.config.time_conditioning:
            return F.silu(self.sigma_map(sigma_bar.reshape(batch_size)))  # (B, C)
        return F.silu(self.cond).to(dtype).expand(batch_size, -1)

    def _labels(self, label: Tensor | None, batch_size: int, device) -> Tensor:
        """Labels as int64 (B,); None or a negative label is the null label."""
        null = self.config.num_labels
        if label is None:
            return torch.full((batch_size,), null, dtype=torch.int64, device=device)
        label = label.to(device=device, dtype=torch.int64).reshape(batch_size)
        return torch.where(label < 0, null, label)

    def _conditioning(self, sigma_bar: Tensor | None, label: Tensor) -> Tensor:
        """adaLN's input of a conditional model: the noise (or constant) embedding plus the label's, (B, C)."""
        base = self.sigma_map(sigma_bar.reshape(len(label))) if self.config.time_conditioning else self.cond
        return F.silu(base + self.label_embed(label))

    def to_log_score(self, logits: Tensor, x_t: Tensor, sigma_bar: Tensor) -> Tensor:
        """Turn raw outputs into log scores with 0 at each current token."""
        if self.time_independent:
            # RADD: s_y = p(x_0 = y | unmasked) / (e^sigma_bar - 1) for data tokens y.
            return AbsorbingGraph.score_from_clean(self._token_log_probs(logits), x_t, sigma_bar)
        if self.config.scale_by_sigma:
            # The absorbing score at a mask is about 1 / (e^sigma_bar - 1) per token: start the raw output there.
            shift = torch.log(expm1_stable(sigma_bar.float())) + math.log(logits.shape[-1] - 1)
            logits = logits - shift[:, None, None]
        return logits.scatter(-1, x_t[..., None], 0.0)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())
