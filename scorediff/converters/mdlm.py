"""MDLM (Sahoo et al. 2024; kuleshov-group/mdlm, the Hub's ``kuleshov-group/mdlm-owt``): a transformers
remote-code model (``model_type: mdlm``) whose weights sit under ``backbone.``: SEDD's DiT with a mask token
(the last id), trained without time conditioning (the backbone is always given sigma = 0). Its adaLN layers then
see a constant, ``silu(sigma_map(0))``, which is folded into their biases: the result is scorediff's
time-independent network, whose log-probabilities over the data tokens are MDLM's (its "subs" parameterisation
masks the mask logit and normalises the rest, as scorediff's does). A time-conditioned MDLM is refused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checkpoint import CheckpointError
from ..graphs import get_graph
from ..model import ModelConfig, SEDDTransformer
from ..model.layers import NoiseEmbedding
from ..objectives import DiffusionObjective
from ..placement import empty_network
from ..schedules import get_schedule
from .sedd import published_names, rename_embedding
from .weights import adaln_names, check_rotary, constant_adaln, identity_adaln, load_strict, match_keys

NAME = "MDLM"
PREFIX = "backbone."


def matches(config: dict) -> bool:
    return config.get("model_type") == "mdlm"


def model_config(config: dict) -> ModelConfig:
    """The time-independent DiT an MDLM (or BD3-LM) ``config.json`` states, its mask token included."""
    return ModelConfig(
        vocab_size=int(config["vocab_size"]),
        hidden_size=int(config["hidden_dim"]),
        cond_dim=int(config["cond_dim"]),
        n_blocks=int(config["n_blocks"]),
        n_heads=int(config["n_heads"]),
        seq_len=int(config["model_length"]),
        dropout=float(config.get("dropout", 0.0)),
        scale_by_sigma=False,
        time_conditioning=False,
    )


def constant_conditioning(state: dict[str, Tensor], cond_dim: int) -> Tensor:
    """``silu(sigma_map(0))``, (C,): what every adaLN layer of an MDLM without time conditioning sees."""
    weights = {
        name.removeprefix("sigma_map."): state.pop(name) for name in list(state) if name.startswith("sigma_map.")
    }
    device = next(iter(weights.values())).device  # meta for a model loaded without weights
    with torch.device(device):
        embedding = NoiseEmbedding(cond_dim)
    embedding.load_state_dict(weights)
    with torch.no_grad():
        return F.silu(embedding(torch.zeros(1, device=device)))[0]


def convert(config: dict, state: dict[str, Tensor]) -> tuple[SEDDTransformer, DiffusionObjective]:
    check_untimed(config, NAME)
    graph = get_graph("absorbing", int(config["vocab_size"]) - 1)  # the last id is the mask
    model = empty_network(SEDDTransformer, model_config(config), graph.mask_id)
    load_backbone(model, state, NAME)
    return model.eval(), DiffusionObjective(graph, get_schedule("loglinear"), time_conditioning=False, mask_count=True)


def check_untimed(config: dict, layout: str) -> None:
    if config.get("time_conditioning", False):
        raise CheckpointError(f"this {layout} is time-conditioned; scorediff converts {layout} models without it")
    if config.get("backbone", "dit") != "dit":
        raise CheckpointError(f"{layout} backbone {config['backbone']!r} is not converted; only 'dit' is")


def load_backbone(
    model: SEDDTransformer, state: dict[str, Tensor], layout: str, adaln: bool = True, optional: frozenset = frozenset()
) -> None:
    """Load the ``backbone.`` weights of the kuleshov-group layout (MDLM, BD3-LM) into ``model``, a scorediff
    time-independent network: adaLN layers see ``silu(sigma_map(0))`` (folded into their biases) or, without
    adaLN, are fixed to the identity; ``optional`` names (buffers such as sampling bounds) may be present."""
    state = dict(state)
    check_rotary(state.pop(f"{PREFIX}rotary_emb.inv_freq", None), model.config.hidden_size // model.config.n_heads)
    ours = model.state_dict()
    names = adaln_names(model.config.n_blocks)
    published = published_names(ours) - {"cond"}
    if adaln:
        published |= {f"sigma_map.mlp.{i}.{kind}" for i in (0, 2) for kind in ("weight", "bias")}
    else:
        published -= {f"{name}.{kind}" for name in names for kind in ("weight", "bias")}
    match_keys(state, {PREFIX + name for name in published}, layout, optional)
    state = {name.removeprefix(PREFIX): tensor for name, tensor in state.items() if name not in optional}
    c = constant_conditioning(state, model.config.cond_dim) if adaln else None

    def constant(name: str) -> tuple[Tensor, Tensor]:
        if not adaln:
            weight = ours[f"{name}.weight"]
            return weight, identity_adaln(weight, model.config.hidden_size)
        weight, bias = state.pop(f"{name}.weight"), state.pop(f"{name}.bias")
        return weight, weight.float() @ c.to(weight.device) + bias.float()

    state.update(constant_adaln(names, constant), cond=torch.zeros(ours["cond"].shape))
    load_strict(model, rename_embedding(state), layout)
