"""What a training step of a network costs in matrix-product FLOPs, per data token (for FLOP-matched comparisons
and model FLOP/s)."""

from __future__ import annotations

from torch import nn

from .block_diffusion import BlockDiffusionTransformer

PER_SEQUENCE = ("adaLN_modulation", "sigma_map")
"""Linear maps applied once per sequence (to the conditioning vector), not at every position."""


def _linear_weights(module: nn.Module) -> int:
    return sum(
        m.weight.numel()
        for name, m in module.named_modules()
        if isinstance(m, nn.Linear) and not any(part in name for part in PER_SEQUENCE)
    )


def _head_weights(model: nn.Module) -> int:
    """The weights of a tied output map (a llama's ``tie_embeddings``): no ``nn.Linear`` holds them."""
    config = model.config
    return config.vocab_size * config.hidden_size if getattr(config, "tie_embeddings", False) else 0


def _key_value_weights(block: nn.Module) -> int:
    """The weights that the clean copy goes through in the last block of a block diffusion network: the DiT's
    joint q/k/v map (its queries are cut after it), a llama's key and value maps (its queries are cut before)."""
    if hasattr(block, "attn_qkv"):
        return block.attn_qkv.weight.numel()
    return block.self_attn.k_proj.weight.numel() + block.self_attn.v_proj.weight.numel()


def training_flops_per_token(model: nn.Module) -> float:
    """Forward and backward matrix-product FLOPs of one training step per data token, at ``model.config.seq_len``.

    Each weight of a linear map that a position goes through costs 6 FLOPs (2 forward; 4 backward, for the
    gradients of the input and of the weight), and attention over ``S`` keys costs ``12 S H K`` per query per block
    (``Q K^T`` and ``P V``, forward and backward; ``H K = D`` but in a llama with its own ``head_dim``, and grouped
    keys and values are repeated for every query head). The token embedding is a lookup, and adaLN's modulation
    and the noise embedding act once per sequence, so none is counted (a tied output map is: it multiplies); nor
    is elementwise work. A block diffusion network (``BlockDiffusionTransformer``) runs ``2 L`` positions, the noised
    tokens and their clean copy, against ``2 L`` keys, except in its last block, where the clean copy only lends
    keys and values, and in the output layer, which sees the noised positions alone; a shifted one
    (``ShiftedBlockDiffusionTransformer``) reads clean states as well and runs both halves and its BOS in every
    block, ``2 + 1 / L`` positions per data token (so its count is not a whole number).
    """
    config = model.config
    width, seq_len, blocks = config.n_heads * config.head_size, config.seq_len, list(model.blocks)
    outside = 6 * (_linear_weights(model) - sum(_linear_weights(block) for block in blocks) + _head_weights(model))
    inside = sum(6 * _linear_weights(block) for block in blocks)
    if not isinstance(model, BlockDiffusionTransformer):
        return outside + inside + 12 * len(blocks) * seq_len * width
    keys = 2 * seq_len
    if getattr(config, "shift", False):  # reads clean states too: every block runs all 2 L + 1 positions (+ BOS)
        positions = keys + 1
        return outside + (inside * positions + 12 * positions**2 * width * len(blocks)) / seq_len
    last = blocks[-1]
    shared = _key_value_weights(last)
    # every block but the last runs both halves; the last runs its key/value maps on both, the rest on one
    total = outside + 2 * (inside - 6 * _linear_weights(last)) + 6 * (_linear_weights(last) + shared)
    return total + 12 * keys * width * (2 * len(blocks) - 1)  # two queries per token but in the last block
