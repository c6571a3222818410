"""BD3-LM (Arriola et al. 2025; kuleshov-group/bd3lms, the Hub's ``kuleshov-group/bd3lm-owt-block_size{4,8,16}``):
MDLM's layout (``backbone.`` weights, ``model_type: bd3lm``) with a ``block_size`` and the attention of
``[x_t, x_0]`` that scorediff's block diffusion network computes (each noised block sees itself and the clean
blocks before it). Converted as MDLM is: the constant conditioning folded into the adaLN biases (or adaLN fixed to
the identity when ``adaln`` is off); the sampling bounds it stores (``sampling_eps_min``/``max``) are not used.
"""

from __future__ import annotations

import dataclasses

from torch import Tensor

from ..checkpoint import CheckpointError
from ..graphs import get_graph
from ..model import BlockDiffusionTransformer
from ..objectives import BlockDiffusionObjective
from ..placement import empty_network
from ..schedules import get_schedule
from .mdlm import check_untimed, load_backbone, model_config

NAME = "BD3-LM"
SAMPLING_BOUNDS = frozenset({"sampling_eps_min", "sampling_eps_max"})


def matches(config: dict) -> bool:
    return config.get("model_type") == "bd3lm"


def convert(config: dict, state: dict[str, Tensor]) -> tuple[BlockDiffusionTransformer, BlockDiffusionObjective]:
    check_untimed(config, NAME)
    if config.get("causal", False) or not config.get("cross_attn", True):
        raise CheckpointError("only BD3-LM models with cross attention to the clean blocks (cross_attn, not causal)")
    block_size = int(config["block_size"])
    graph = get_graph("absorbing", int(config["vocab_size"]) - 1)
    network = dataclasses.replace(model_config(config), block_size=block_size)
    model = empty_network(BlockDiffusionTransformer, network, graph.mask_id)
    load_backbone(model, state, NAME, adaln=bool(config.get("adaln", True)), optional=SAMPLING_BOUNDS)
    return model.eval(), BlockDiffusionObjective(graph, get_schedule("loglinear"), block_size)
