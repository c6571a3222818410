"""SEDD (Lou et al. 2024; louaaron/Score-Entropy-Discrete-Diffusion, the Hub's ``louaaron/sedd-small`` and
``sedd-medium``): the folder its ``PyTorchModelHubMixin`` wrote, ``config.json`` the whole hydra config
(``tokens``, ``graph.type``, ``noise``, ``model``) and the weights under the original parameter names. The
network is scorediff's own SEDD transformer, so the weights only change two names.
"""

from __future__ import annotations

from torch import Tensor

from ..graphs import Graph, get_graph
from ..model import ModelConfig, SEDDTransformer
from ..objectives import DiffusionObjective
from ..placement import empty_network
from ..schedules import NoiseSchedule, get_schedule
from .weights import check_rotary, load_strict, match_keys

NAME = "SEDD"
ROTARY = "rotary_emb.inv_freq"
EMBEDDING = "vocab_embed.embedding"
"""The original DiT's name of scorediff's ``vocab_embed.weight``: the one name the SEDD family (SEDD, RADD, MDLM,
BD3-LM) spells otherwise."""


def is_hydra_config(config: dict) -> bool:
    """Whether a parsed ``config.json`` is a hydra config of the SEDD family (SEDD, RADD)."""
    return isinstance(config.get("model"), dict) and "tokens" in config and "graph" in config


def matches(config: dict) -> bool:
    return is_hydra_config(config) and config["model"].get("type", "ddit") != "ddit_wot"


def published_names(names) -> set[str]:
    """scorediff's DiT weight ``names`` as the SEDD family's code spells them (``EMBEDDING``)."""
    return {EMBEDDING if name == "vocab_embed.weight" else name for name in names}


def rename_embedding(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """``state`` (published names, in place) with its embedding under scorediff's name; returns ``state``."""
    state["vocab_embed.weight"] = state.pop(EMBEDDING)
    return state


def components(config: dict) -> tuple[Graph, NoiseSchedule]:
    """The graph and noise schedule a hydra config names."""
    graph = get_graph(config["graph"]["type"], int(config["tokens"]))
    noise = config.get("noise", {})
    if noise.get("type", "loglinear") == "geometric":
        return graph, get_schedule("geometric", sigma_min=noise["sigma_min"], sigma_max=noise["sigma_max"])
    return graph, get_schedule("loglinear")


def model_config(config: dict, vocab_size: int, **options) -> ModelConfig:
    """The DiT a hydra config's ``model`` section states, with ``vocab_size`` and any other ``options``."""
    model = config["model"]
    return ModelConfig(
        vocab_size=vocab_size,
        hidden_size=int(model["hidden_size"]),
        cond_dim=int(model["cond_dim"]),
        n_blocks=int(model["n_blocks"]),
        n_heads=int(model["n_heads"]),
        seq_len=int(model.get("length", 1024)),
        dropout=float(model.get("dropout", 0.0)),
        **options,
    )


def convert(config: dict, state: dict[str, Tensor]) -> tuple[SEDDTransformer, DiffusionObjective]:
    graph, schedule = components(config)
    options = {"scale_by_sigma": bool(config["model"].get("scale_by_sigma", False))}
    model = empty_network(SEDDTransformer, model_config(config, graph.vocab_size, **options), graph.mask_id)
    state = {name.removeprefix("module."): tensor for name, tensor in state.items()}  # saved from a DDP wrapper
    check_rotary(state.pop(ROTARY, None), model.config.hidden_size // model.config.n_heads)
    match_keys(state, published_names(model.state_dict()), NAME)
    load_strict(model, rename_embedding(state), NAME)
    return model, DiffusionObjective(graph, schedule)
