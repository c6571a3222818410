"""The layers the transformers are built from: the noise embedding, bias-free LayerNorm and RMSNorm in float32,
rotary position tables, tanh-GELU, the SwiGLU MLP and adaLN modulation.

Legend: B batch, L sequence length, H heads, K head size, D hidden size, C conditioning size.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def timestep_embedding(sigma_bar: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal features of the noise level, ``cat(cos, sin)``, float32 (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=sigma_bar.device) / half)
    args = sigma_bar.float()[:, None] * freqs[None]  # (B, dim / 2)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class NoiseEmbedding(nn.Module):
    """``sigma_bar -> MLP(sinusoidal(sigma_bar))``, (B,) -> (B, C)."""

    def __init__(self, cond_dim: int, frequency_dim: int = 256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))

    def forward(self, sigma_bar: Tensor) -> Tensor:
        features = timestep_embedding(sigma_bar, self.frequency_dim)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


class LayerNorm(nn.Module):
    """LayerNorm computed in float32, without a bias unless asked (RADD's networks have one)."""

    def __init__(self, dim: int, bias: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        out = F.layer_norm(x.float(), (self.dim,)).to(x.dtype) * self.weight
        return out if self.bias is None else out + self.bias


class RMSNorm(nn.Module):
    r"""Root-mean-square norm computed in float32 at least, :math:`w \odot x / \sqrt{\mathrm{mean}(x^2) + \epsilon}`
    (Zhang & Sennrich 2019); like LLaMA's, the scale multiplies after the cast back to the input's dtype."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        wide = x.to(torch.promote_types(x.dtype, torch.float32))  # half precision widened, float64 kept
        normed = wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


class SwiGLU(nn.Module):
    """The gated MLP of LLaMA (Shazeer 2020): ``down(silu(gate(x)) * up(x))``, (..., D) -> (..., D), no biases."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def rotary_tables(
    seq_len: int, head_dim: int, device=None, base: float = 10000.0, start: int = 0
) -> tuple[Tensor, Tensor]:
    """``cos`` and ``sin`` of the rotary angles of positions ``start..start+seq_len-1``, float32 (L, K),
    halves repeated (non-interleaved)."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)
    positions = torch.arange(start, start + seq_len, dtype=torch.float32, device=device)
    freqs = torch.outer(positions, inv_freq)  # (L, K / 2)
    angles = torch.cat([freqs, freqs], dim=-1)  # (L, K)
    return angles.cos(), angles.sin()


class RotaryTables(nn.Module):
    """The rotary tables of positions ``0..max_len-1``, computed once (a buffer that is not saved); longer
    requests are computed on the spot."""

    def __init__(self, head_dim: int, max_len: int, base: float = 10000.0):
        super().__init__()
        self.head_dim = head_dim
        self.base = base
        cos, sin = rotary_tables(max_len, head_dim, base=base)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def reset_buffers(self, device=None) -> None:
        """Compute the tables again, in float32 on ``device``: a network built on the meta device (or cast to half
        precision as a whole) has none, or rounded ones, and the tables are never saved."""
        self.cos, self.sin = rotary_tables(self.cos.shape[0], self.head_dim, device, self.base)

    def forward(self, length: int, start: int = 0) -> tuple[Tensor, Tensor]:
        if start + length <= self.cos.shape[0]:
            return self.cos[start : start + length], self.sin[start : start + length]
        return rotary_tables(length, self.head_dim, self.cos.device, self.base, start)


class TanhGELU(nn.Module):
    """GELU with the tanh approximation (the original SEDD's activation).

    Compiled, it is written as ``x sigmoid(2 z)``, the same function (``(1 + tanh z) / 2 = sigmoid(2 z)``),
    because the CPU code inductor generates for that form runs at twice the speed of its tanh form. Eager
    PyTorch's own kernel is the fastest there.
    """

    @staticmethod
    def sigmoid_form(x: Tensor) -> Tensor:
        return x * torch.sigmoid(GELU_TANH_SCALE * (x + 0.044715 * x * x * x))

    def forward(self, x: Tensor) -> Tensor:
        return self.sigmoid_form(x) if _is_compiling() else F.gelu(x, approximate="tanh")


GELU_TANH_SCALE = 2 * math.sqrt(2 / math.pi)
_is_compiling = getattr(torch.compiler, "is_compiling", lambda: False)  # torch >= 2.3


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate query or key ``x`` (B, H, L, K) by position: ``x cos + rotate_half(x) sin``."""
    first, second = x.chunk(2, dim=-1)
    rotated = torch.cat([-second, first], dim=-1)
    wide = torch.promote_types(x.dtype, torch.float32)  # half precision widened, float64 kept
    return (x.to(wide) * cos + rotated.to(wide) * sin).to(x.dtype)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]
