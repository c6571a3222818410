"""RADD (Ou et al. 2025; ML-GSAI/RADD, the Hub's ``JingyangOu/radd-t-dce`` and ``radd-lambda-dce``): SEDD's
hydra config with ``model.type: ddit_wot`` and a network without time conditioning, whose LayerNorms have a bias
and whose blocks have no adaLN. It becomes scorediff's time-independent network (``time_conditioning=False``,
``norm_bias=True``) with every adaLN layer fixed to the identity (no shift, no scale, a gate of one); the outputs
agree, and the objective is the absorbing one scored in its any-order form.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..checkpoint import CheckpointError
from ..model import SEDDTransformer
from ..objectives import DiffusionObjective
from ..placement import empty_network
from .sedd import ROTARY, components, is_hydra_config, model_config, published_names, rename_embedding
from .weights import adaln_names, check_rotary, constant_adaln, identity_adaln, load_strict, match_keys

NAME = "RADD"


def matches(config: dict) -> bool:
    return is_hydra_config(config) and config["model"].get("type") == "ddit_wot"


def convert(config: dict, state: dict[str, Tensor]) -> tuple[SEDDTransformer, DiffusionObjective]:
    graph, schedule = components(config)
    if graph.mask_id is None:
        raise CheckpointError(
            f"RADD models use the absorbing graph; this config.json names {config['graph']['type']!r}"
        )
    options = {"time_conditioning": False, "scale_by_sigma": False, "norm_bias": True}
    model = empty_network(SEDDTransformer, model_config(config, graph.vocab_size, **options), graph.mask_id)
    state = {name.removeprefix("module."): tensor for name, tensor in state.items()}
    check_rotary(state.pop(ROTARY, None), model.config.hidden_size // model.config.n_heads)
    ours = model.state_dict()
    match_keys(state, published_names(n for n in ours if "adaLN" not in n) - {"cond"}, NAME)
    rename_embedding(state)

    def constant(name: str) -> tuple[Tensor, Tensor]:
        weight = ours[f"{name}.weight"]
        return weight, identity_adaln(weight, model.config.hidden_size)

    state.update(constant_adaln(adaln_names(model.config.n_blocks), constant), cond=torch.zeros(ours["cond"].shape))
    load_strict(model, state, NAME)
    return model, DiffusionObjective(graph, schedule, time_conditioning=False, mask_count=True)
