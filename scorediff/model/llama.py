"""The LLaMA-style backbone (``model.arch: llama``): RMSNorm, SwiGLU, rotary positions of base ``rope_theta``,
grouped-query attention, optional q/k/v biases (Qwen2) and q/k RMSNorm (Qwen3), tied or untied embeddings.

Each network here is its DiT twin with llama layers, so it keeps that twin's contract and every objective takes it
unchanged: ``LlamaTransformer`` is a ``SEDDTransformer`` (``forward(x_t, sigma_bar, label)`` gives log scores),
``LlamaBlockDiffusionTransformer`` a ``BlockDiffusionTransformer`` (``forward(x_t, x_0, label)`` and the KV-cache
path) and ``LlamaCausalTransformer`` a ``CausalTransformer`` (``forward(tokens, cache)`` gives next-token
log-probabilities after BOS).

Time conditioning (``time_conditioning=true``, the uniform graph; or ``num_labels``) modulates every block as the
DiT's adaLN does, but around one rather than zero: ``norm(x) (1 + scale) + shift`` and ``x + (1 + gate) f(x)``.
The modulation starts at zero, so a fresh conditioned network, or one given an AR model's weights, computes
exactly the plain LLaMA, whose every layer then learns how far to follow the noise level (the DiT's adaLN-zero
gate would instead switch a pretrained block off). Without it the blocks have no modulation at all and the
absorbing graph runs time-independent, as RADD and LLaDA do.

State-dict keys (``i`` the block; HF LLaMA's ``model.embed_tokens``, ``model.layers.i``, ``model.norm`` and
``lm_head`` are ``vocab_embed``, ``blocks.i``, ``output_layer.norm`` and ``output_layer.linear``)::

    vocab_embed.weight                                  (V, D)              (V + 1, D) with shift: BOS last
    blocks.i.input_layernorm.weight                     (D,)
    blocks.i.self_attn.q_proj.weight / .bias            (H K, D) / (H K,)   bias only with qkv_bias
    blocks.i.self_attn.k_proj.weight / .bias            (G K, D) / (G K,)
    blocks.i.self_attn.v_proj.weight / .bias            (G K, D) / (G K,)
    blocks.i.self_attn.q_norm.weight, .k_norm.weight    (K,)                only with qk_norm
    blocks.i.self_attn.o_proj.weight                    (D, H K)
    blocks.i.post_attention_layernorm.weight            (D,)
    blocks.i.mlp.gate_proj.weight, .up_proj.weight      (I, D)
    blocks.i.mlp.down_proj.weight                       (D, I)
    blocks.i.adaLN_modulation.weight / .bias            (6 D, C) / (6 D,)   only when conditioned
    output_layer.norm.weight                            (D,)
    output_layer.linear.weight                          (V, D)              absent with tie_embeddings
    output_layer.adaLN_modulation.weight / .bias        (2 D, C) / (2 D,)   only when conditioned
    sigma_map.mlp.{0,2}.weight / .bias, label_embed.weight, cond            as in the DiT, when used

A network adapted from an AR model (``model.shift``, masked diffusion only) keeps its shifted head: the output at
position ``i`` predicts token ``i + 1``. ``LlamaTransformer.logits`` puts a BOS (id V, the embedding's extra row)
before ``x_t`` and realigns the outputs (``shift_right``), so its contract stays per position and no objective
knows. ``set_attention_reach`` narrows its attention (``attention_mask``) while it is annealed from causal to full.

Rotary convention: HF LLaMA's ``rotate_half`` on split halves (``layers.apply_rotary``): dimension ``j < K/2`` is
paired with ``j + K/2`` at frequency ``rope_theta^(-2j/K)``, the angles' cosines and sines computed in float32 as HF
does, so HF's q_proj/k_proj weights load with no permutation. llama.cpp's converter permutes the q/k rows of the
``llama`` architecture to interleaved pairs, which a GGUF reader must undo (its qwen2/qwen3 files keep the halves).
No rope scaling (LLaMA 3.1's ``rope_scaling``) is applied.

Legend: B batch, L positions in this call, V vocabulary size, D hidden size, C conditioning size, H query heads,
G key/value heads, K head size, I SwiGLU width.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from ..errors import InputError
from .attention import StaleKVCache
from .block_diffusion import BlockDiffusionTransformer
from .causal import CausalTransformer
from .config import ModelConfig
from .layers import NoiseEmbedding, RMSNorm, RotaryTables
from .llama_blocks import LlamaBlock, LlamaOutput
from .transformer import SEDDTransformer


def shift_right(raw: Tensor, first: Tensor) -> Tensor:
    """Outputs of a shifted head (position ``i`` predicts token ``i + 1``) realigned per position: ``raw``
    (B, L, V) and ``first`` (B, 1, V), the prediction of token 0, give ``[first, raw[:, 0], ..., raw[:, L-2]]``."""
    return torch.cat([first, raw[:, :-1]], dim=1)


def attention_mask(seq_len: int, reach: int, device=None) -> Tensor:
    """Bool (S, S): query ``i`` sees keys ``j <= i + reach`` (0: causal). Adapting an AR model, the mask
    widens from causal to full (``train.attention_anneal_steps``, after DiffuLLaMA's annealing)."""
    positions = torch.arange(seq_len, device=device)
    return positions[None, :] <= positions[:, None] + reach


def require_llama(config: ModelConfig) -> None:
    """A llama network saves ``config.arch`` with its weights, and a loader builds what that names."""
    if config.arch != "llama":
        raise InputError(f"a llama network needs model.arch=llama; got {config.arch!r}")


def init_llama(model: nn.Module) -> None:
    """Normal(0.02) weights, the residual projections scaled by ``1 / sqrt(2 n_blocks)`` (GPT-2), zero biases,
    unit norms, and zero modulation so that a conditioned network starts as the plain one."""
    residual_std = 0.02 / math.sqrt(2 * model.config.n_blocks)
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            std = residual_std if name.endswith(("o_proj", "down_proj")) else 0.02
            nn.init.normal_(module.weight, std=std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)
        if name.endswith("adaLN_modulation"):
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)
    if hasattr(model, "cond"):
        nn.init.zeros_(model.cond)


class LlamaTransformer(SEDDTransformer):
    """``SEDDTransformer`` (log concrete scores of ``forward(x_t, sigma_bar, label)``) with the llama backbone.

    Args:
        config (ModelConfig): architecture, ``arch="llama"``.
        mask_id (int | None): the absorbing graph's mask state, as for ``SEDDTransformer``.
    """

    def build_layers(self, config: ModelConfig) -> None:
        """The embedding, the conditioning (when the network has any), the blocks, the output and rotary tables."""
        require_llama(config)
        conditioned = config.time_conditioning or config.num_labels > 0
        self.attention_band: Tensor | None = None  # full attention (``set_attention_reach``)
        self.vocab_embed = nn.Embedding(config.vocab_size + config.shift, config.hidden_size)  # + BOS, shifted
        if config.time_conditioning:
            self.sigma_map = NoiseEmbedding(config.cond_dim)
        elif config.num_labels:
            self.cond = nn.Parameter(torch.zeros(config.cond_dim))
        if config.num_labels:
            self.label_embed = nn.Embedding(config.num_labels + 1, config.cond_dim)  # the last row: the null label
        self.blocks = nn.ModuleList(LlamaBlock(config, conditioned) for _ in range(config.n_blocks))
        self.output_layer = LlamaOutput(config, self.vocab_embed, conditioned)
        self.rotary = RotaryTables(config.head_size, config.seq_len, config.rope_theta)

    def reset_parameters(self) -> None:
        init_llama(self)

    @property
    def bos_id(self) -> int:
        """A shifted network's BOS token, the embedding's last row (``config.shift``)."""
        return self.config.vocab_size

    def set_attention_reach(self, reach: int | None) -> None:
        """Let query ``i`` see keys up to ``i + reach`` (``attention_mask``; 0: causal) from now on; None: all keys.
        The mask is a tensor made here, so a compiled network is not recompiled for each ``reach``."""
        if reach is None:
            self.attention_band = None
        else:
            length = self.config.seq_len + self.config.shift
            self.attention_band = attention_mask(length, reach, self.vocab_embed.weight.device)

    def logits(self, x_t: Tensor, sigma_bar: Tensor | None, label: Tensor | None = None) -> Tensor:
        """The raw outputs, float32 (B, L, V), position ``i``'s for token ``i``; a shifted network reads them
        from the hidden states of ``[BOS] + x_t`` at ``0..L-1`` (``config.shift``)."""
        if self.config.shift:
            x_t = torch.cat([x_t.new_full((x_t.shape[0], 1), self.bos_id), x_t], dim=1)
        x = self.vocab_embed(x_t)  # (B, S, D), S = L (+ 1 shifted)
        c = self.adaln_input(sigma_bar, label, x_t.shape[0], x.dtype, x_t.device)
        cos, sin = self.rotary(x_t.shape[1])
        length = x_t.shape[1]
        mask = None if self.attention_band is None else self.attention_band[:length, :length]
        for block in self.blocks:
            x = block(x, c, cos, sin, mask=mask)
        raw = self.output_layer(x, c).float()
        return shift_right(raw[:, 1:], raw[:, :1]) if self.config.shift else raw

    def stale_cache(self, batch_size: int, seq_len: int) -> StaleKVCache:
        """``SEDDTransformer.stale_cache``, with room for a shifted network's BOS."""
        return super().stale_cache(batch_size, seq_len + self.config.shift)

    def window_log_probs(self, x_t: Tensor, cache: StaleKVCache, start: int = 0, stop: int | None = None) -> Tensor:
        """``SEDDTransformer.window_log_probs``; shifted, the pass runs ``[BOS] + x_t`` from the state that predicts
        ``start`` (the token before it, or BOS) to the window's last token, whose output is dropped."""
        if not self.config.shift:
            return super().window_log_probs(x_t, cache, start, stop)
        stop = x_t.shape[1] if stop is None else stop
        tokens = torch.cat([x_t.new_full((x_t.shape[0], 1), self.bos_id), x_t], dim=1)[:, start : stop + 1]
        return self._token_log_probs(self._window_pass(tokens, cache, start)[:, :-1])

    def adaln_input(self, sigma_bar: Tensor | None, label: Tensor | None, batch_size: int, dtype, device):
        """The DiT's conditioning (B, C) when the network has one; None for an unlabelled time-independent one."""
        if self.config.time_conditioning or self.config.num_labels:
            return super().adaln_input(sigma_bar, label, batch_size, dtype, device)
        if label is not None:
            raise InputError("this model is unconditional: it takes no label")
        return None


class LlamaBlockDiffusionTransformer(BlockDiffusionTransformer, LlamaTransformer):
    """``BlockDiffusionTransformer`` (``forward(x_t, x_0, label)``, ``new_cache``, ``extend_cache``,
    ``block_log_probs``) with the llama backbone: block-causal attention in training, the exact KV cache of the
    clean blocks in sampling."""


class LlamaCausalTransformer(CausalTransformer):
    """``CausalTransformer`` (next-token log-probabilities of ``forward(tokens, cache)``, BOS first) with the
    llama backbone, unconditioned and causal."""

    def build_layers(self, config: ModelConfig) -> None:
        """The embedding, the causal blocks, the output and the rotary tables."""
        require_llama(config)
        if config.shift:
            raise InputError("model.shift applies to masked diffusion; an autoregressive model is shifted already")
        self.vocab_embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.blocks = nn.ModuleList(LlamaBlock(config, causal=True) for _ in range(config.n_blocks))
        self.output_layer = LlamaOutput(config, self.vocab_embed, conditioned=False)
        self.rotary = RotaryTables(config.head_size, config.seq_len, config.rope_theta)

    def reset_parameters(self) -> None:
        init_llama(self)

    def head(self, x: Tensor) -> Tensor:
        return self.output_layer(x, None)
