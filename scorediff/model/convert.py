"""Read checkpoints in the layout of the original SEDD repository (louaaron/Score-Entropy-Discrete-Diffusion).

Such a directory holds the ``config.json`` its ``PyTorchModelHubMixin`` wrote (the whole hydra config:
``tokens``, ``graph.type``, ``noise``, ``model``) and ``model.safetensors`` with its parameter names.
The published ``louaaron/sedd-small`` and ``sedd-medium`` weights have this layout: download them once
with any tool, then point ``scorediff.load`` at the local directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor

from ..errors import InputError
from ..graphs import Graph, get_graph
from ..schedules import NoiseSchedule, get_schedule
from .layers import rotary_tables
from .transformer import ModelConfig


def is_original_config(config: dict) -> bool:
    """Whether a parsed ``config.json`` is in the original SEDD layout."""
    return isinstance(config.get("model"), dict) and "tokens" in config and "graph" in config


def original_components(config: dict) -> tuple[ModelConfig, Graph, NoiseSchedule]:
    """Model configuration, graph and schedule described by an original SEDD ``config.json``."""
    graph = get_graph(config["graph"]["type"], int(config["tokens"]))
    noise = config.get("noise", {})
    if noise.get("type", "loglinear") == "geometric":
        schedule = get_schedule("geometric", sigma_min=noise["sigma_min"], sigma_max=noise["sigma_max"])
    else:
        schedule = get_schedule("loglinear")
    model = config["model"]
    model_config = ModelConfig(
        vocab_size=graph.vocab_size,
        hidden_size=int(model["hidden_size"]),
        cond_dim=int(model["cond_dim"]),
        n_blocks=int(model["n_blocks"]),
        n_heads=int(model["n_heads"]),
        seq_len=int(model.get("length", 1024)),
        dropout=float(model.get("dropout", 0.0)),
        scale_by_sigma=bool(model.get("scale_by_sigma", False)),
    )
    return model_config, graph, schedule


def convert_state_dict(state: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """Rename original parameters to scorediff's; the rotary buffer is checked, then dropped."""
    state = dict(state)
    out = {}
    inv_freq = state.pop("rotary_emb.inv_freq", None)
    if inv_freq is not None:
        head_dim = config.hidden_size // config.n_heads
        expected = 1.0 / 10000 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        if inv_freq.shape != expected.shape or not torch.allclose(inv_freq.float(), expected):
            raise InputError("rotary_emb.inv_freq in the checkpoint is not the standard base-10000 table")
    rotary_tables(1, config.hidden_size // config.n_heads)  # fails early on an odd head size
    for name, tensor in state.items():
        name = name.removeprefix("module.")  # saved from a DDP wrapper
        if name == "vocab_embed.embedding":
            name = "vocab_embed.weight"
        out[name] = tensor
    return out


def read_original_checkpoint(path: str | Path) -> tuple[ModelConfig, Graph, NoiseSchedule, dict[str, Tensor]]:
    """Everything needed to rebuild an original SEDD model from a local directory."""
    from safetensors.torch import load_file

    path = Path(path)
    config = json.loads((path / "config.json").read_text())
    model_config, graph, schedule = original_components(config)
    weights = path / "model.safetensors"
    if weights.exists():
        state = load_file(str(weights))
    elif (path / "pytorch_model.bin").exists():
        import pickle

        try:  # weights only: a pickle that holds anything but tensors is refused, never run
            state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
            reason = str(error).splitlines()[0][:160]
            raise InputError(
                f"pytorch_model.bin is not a plain file of weights, so it is not read ({reason})"
            ) from None
    else:
        raise FileNotFoundError(f"{path} has no model.safetensors (or pytorch_model.bin)")
    return model_config, graph, schedule, convert_state_dict(state, model_config)
