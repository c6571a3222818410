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


def training_flops_per_token(model: nn.Module) -> int:
    """Forward and backward matrix-product FLOPs of one training step per data token, at ``model.config.seq_len``.

    Each weight of a linear map that a position goes through costs 6 FLOPs (2 forward; 4 backward, for the
    gradients of the input and of the weight), and attention over ``S`` keys costs ``12 S D`` per query per block
    (``Q K^T`` and ``P V``, forward and backward). The token embedding is a lookup, and adaLN's modulation and the
    noise embedding act once per sequence, so neither is counted; elementwise work is not counted either. A block
    diffusion network (``BlockDiffusionTransformer``) runs ``2 L`` positions, the noised tokens and their clean
    copy, against ``2 L`` keys, except in its last block, where the clean copy only lends keys and values, and in
    the output layer, which sees the noised positions alone.
    """
    config = model.config
    hidden, seq_len, blocks = config.hidden_size, config.seq_len, list(model.blocks)
    if not isinstance(model, BlockDiffusionTransformer):
        return 6 * _linear_weights(model) + 12 * len(blocks) * seq_len * hidden
    keys = 2 * seq_len
    total = 6 * (_linear_weights(model) - sum(_linear_weights(block) for block in blocks))  # the output layer
    for index, block in enumerate(blocks):
        if index < len(blocks) - 1:
            total += 2 * (6 * _linear_weights(block) + 12 * keys * hidden)
        else:
            qkv = block.attn_qkv.weight.numel()
            total += 2 * 6 * qkv + 6 * (_linear_weights(block) - qkv) + 12 * keys * hidden
    return total
