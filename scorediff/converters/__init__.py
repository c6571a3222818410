"""Published discrete diffusion models, read into scorediff's networks and objectives.

Each layout is a module with ``NAME``, ``matches(config)`` (its ``config.json``, parsed) and
``convert(config, state) -> (network, objective)``, which renames (or folds) the published weights into a scorediff
network and checks the names strictly: a missing or unexpected weight is an error that names it. Only JSON and
weights are read; no published modelling code is imported or run. The LLaMA family (transformers' LLaMA, Qwen2,
Qwen3 and SmolLM2 folders; LLaDA; Dream) is read onto the llama backbone with the folder's ``tokenizer.json``
(``published_tokenizer``); a GGUF file is a layout of its own (``read_gguf``), having no ``config.json``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint import CheckpointError
from ..data.tokenizers import Tokenizer
from ..placement import model_dtype, place
from . import bd3lm, dream, hf_llama, llada, mdlm, radd, sedd
from .gguf import read_gguf
from .llama_layout import folder_tokenizer
from .weights import in_file, read_weights

LAYOUTS = (sedd, radd, mdlm, bd3lm, hf_llama, llada, dream)

__all__ = ["LAYOUTS", "published_layout", "published_tokenizer", "read_gguf", "read_published"]


def published_layout(config: dict):
    """The layout module whose ``config.json`` this is, or None."""
    return next((layout for layout in LAYOUTS if layout.matches(config)), None)


def read_published(folder: str | Path, config: dict, dtype: str | torch.dtype = torch.float32, device=None):
    """``(layout name, network, objective)`` of the published model in ``folder``, its weights in ``dtype`` on
    ``device`` (the CPU when None): read in that dtype, and the network built without storage takes them
    (``scorediff.placement``)."""
    folder, dtype = Path(folder), model_dtype(dtype)  # a path given as text; a dtype by name or refused
    if not isinstance(config, dict):
        raise CheckpointError(f"{folder / 'config.json'} must hold a JSON object; got {type(config).__name__}")
    layout = published_layout(config)
    if layout is None:
        raise CheckpointError(f"{folder / 'config.json'} is not a layout scorediff reads")
    device = torch.device("cpu") if device is None else device
    state = read_weights(folder, dtype, device)
    try:
        network, objective = layout.convert(config, state)
    except CheckpointError as error:
        raise in_file(folder, error) from None
    except (ValueError, KeyError, TypeError) as error:  # a config.json that lacks or garbles a field
        raise CheckpointError(f"{folder} is not a usable {layout.NAME} checkpoint ({error})") from None
    return layout.NAME, place(network, dtype, device), objective


def published_tokenizer(folder: Path, config: dict, vocab_size: int) -> Tokenizer | None:
    """The ``tokenizer.json`` beside a LLaMA-family model (None for other layouts, or without one), its mask id
    moved to the last as the converter moved the network's (``vocab_size``: the network's ids, mask included)."""
    layout = published_layout(config)
    if layout not in (hf_llama, llada, dream):
        return None
    swap = (layout.mask_id(config), vocab_size - 1) if layout in (llada, dream) else None
    return folder_tokenizer(folder, swap)
