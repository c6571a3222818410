"""The FLOP count per token against PyTorch's own count of a training step's matrix products."""

import dataclasses

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from scorediff.builders import build_model, build_objective
from scorediff.config import load_config
from scorediff.model.flops import PER_SEQUENCE, training_flops_per_token

SMALL = {"hidden_size": 64, "cond_dim": 32, "n_blocks": 3, "n_heads": 2, "seq_len": 32}


#: A llama with grouped keys and values, heads wider than hidden_size / n_heads and a tied output map.
QWEN_LIKE = {"n_kv_heads": 1, "head_dim": 48, "tie_embeddings": True}


@pytest.mark.parametrize(
    "preset, time_conditioning, extra",
    [
        ("tiny", False, {}),
        ("tiny", True, {}),
        ("tiny-ar", False, {}),
        ("tiny-block", False, {}),
        ("tiny-llama", False, {}),
        ("tiny-llama", True, {}),
        ("tiny-llama", False, {"block_size": 4}),
        ("tiny-llama", False, {"block_size": 4, **QWEN_LIKE}),
        ("tiny-llama", False, {"block_size": 4, "shift": True, **QWEN_LIKE}),
        ("tiny-llama-ar", False, {}),
        ("tiny-llama-ar", False, QWEN_LIKE),
    ],
)
def test_training_flops_per_token_matches_the_counted_matrix_products(preset, time_conditioning, extra):
    config = load_config(preset)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, **SMALL, **extra))
    if time_conditioning:
        model = dataclasses.replace(config.model, time_conditioning=True)
        config = dataclasses.replace(
            config, model=model, diffusion=dataclasses.replace(config.diffusion, mask_count=False)
        )
    objective = build_objective(config, 20)
    torch.manual_seed(0)
    model = build_model(config, objective)
    batch_size, seq_len = 4, SMALL["seq_len"]
    x_0 = torch.randint(0, 20, (batch_size, seq_len), generator=torch.Generator().manual_seed(0))
    batch = objective.draw(x_0, torch.Generator().manual_seed(1))
    # bf16 autocast takes the explicit attention on a CPU, whose products the counter sees
    with FlopCounterMode(display=False) as counter, torch.autocast("cpu", dtype=torch.bfloat16):
        objective.loss(model, batch).sum().backward()
    # what the count leaves out: the maps applied once per sequence, 6 FLOPs per weight per sequence, except the
    # noise embedding's first map, whose input (the noise level's frequencies) needs no gradient: 4
    per_sequence = 0
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and any(part in name for part in PER_SEQUENCE):
            per_sequence += (4 if name == "sigma_map.mlp.0" else 6) * module.weight.numel()
    expected = training_flops_per_token(model) * batch_size * seq_len + per_sequence * batch_size
    assert counter.get_total_flops() == pytest.approx(expected, rel=1e-12, abs=0)  # a shifted count is a float
