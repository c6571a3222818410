"""What every converter shares: reading a published folder's weights, and matching their names strictly."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import Tensor, nn

from ..checkpoint import CheckpointError, check_weights, read_json
from ..placement import placed, read_safetensors

SAFETENSORS, PICKLED = "model.safetensors", "pytorch_model.bin"
SHARDED = "model.safetensors.index.json"  # transformers' layout of a large model: weight_map names its shards


def read_weights(folder: Path, dtype: torch.dtype = torch.float32, device=None) -> dict[str, Tensor]:
    """``model.safetensors`` (or its shards), or else ``pytorch_model.bin`` read with ``weights_only=True`` (a pickle
    that holds anything but tensors is refused, never run), each floating-point tensor converted to ``dtype`` on
    ``device`` as it is read (``placement.placed``). Their names and values are checked by ``match_keys``."""
    device = torch.device("cpu") if device is None else device
    if (folder / SAFETENSORS).exists():
        return read_safetensors(folder / SAFETENSORS, dtype, device)
    if (folder / SHARDED).exists():
        return read_shards(folder, dtype, device)
    if not (folder / PICKLED).exists():
        raise CheckpointError(f"{folder} has no {SAFETENSORS} (or {PICKLED})")
    try:
        state = torch.load(folder / PICKLED, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"{folder / PICKLED} is not a plain file of weights, so it is not read ({reason})"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{folder / PICKLED} does not hold a flat dict of tensors")
    return {name: placed(state.pop(name), dtype, device, name) for name in list(state)}  # each original freed


def read_shards(folder: Path, dtype: torch.dtype, device: torch.device) -> dict[str, Tensor]:
    """The shards ``model.safetensors.index.json`` names, merged; each shard must be a file of ``folder`` and hold
    exactly the weights the index assigns it."""
    index = read_json(folder / SHARDED)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(f, str) for f in weight_map.values()):
        raise CheckpointError(f"{folder / SHARDED} has no weight_map of names to shard files")
    state = {}
    for shard in sorted(set(weight_map.values())):
        if Path(shard).name != shard or not shard.endswith(".safetensors"):
            raise CheckpointError(f"{folder / SHARDED} names {shard!r}, which is not a safetensors file of the folder")
        tensors = read_safetensors(folder / shard, dtype, device)
        if set(tensors) != {name for name, file in weight_map.items() if file == shard}:
            raise CheckpointError(f"{folder / shard} does not hold the weights {SHARDED} assigns it")
        state.update(tensors)
    return state


def check_values(state: dict[str, Tensor], source: Path) -> dict[str, Tensor]:
    """Every weight of ``state`` (read from ``source``) is floating point and finite, before any name is known
    (``checkpoint.check_weights``); returns ``state``."""
    check_weights(state, dict.fromkeys(state), "itself", source)
    return state


def match_keys(state: dict[str, Tensor], expected: set[str], layout: str, optional: set[str] = frozenset()) -> None:
    """``state`` has exactly the ``expected`` names of the published ``layout`` (and perhaps some ``optional`` ones),
    floating point and finite (``checkpoint.check_weights``; the shapes are checked by the network that loads
    them)."""
    check_weights(state, dict.fromkeys(expected), f"the {layout} layout", optional=optional)


def load_strict(model: nn.Module, state: dict[str, Tensor], layout: str) -> None:
    """Give ``model``, built on the meta device (``placement.empty_network``), the converted ``state``'s tensors
    themselves once every name and shape is the network's (``checkpoint.check_weights``): a published file whose
    tensor has another shape is a one-line ``CheckpointError``, not torch's multi-line size-mismatch report.
    ``read_published`` then passes it to ``place`` (one dtype, one device, computed buffers)."""
    shapes = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    check_weights(state, shapes, f"the {layout} layout")
    model.load_state_dict(state, assign=True)


def check_rotary(inv_freq: Tensor | None, head_dim: int) -> None:
    """A stored rotary table must be the standard base-10000 one that scorediff computes."""
    if inv_freq is None or inv_freq.is_meta:  # no values to check: a model loaded on the meta device
        return
    expected = 1.0 / 10000 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    expected = expected.to(inv_freq.dtype).float()  # a model loaded in bf16 reads the table rounded to bf16
    if inv_freq.shape != expected.shape or not torch.allclose(inv_freq.float(), expected):
        raise CheckpointError("the stored rotary table (inv_freq) is not the standard base-10000 one")


def constant_adaln(names: list[str], constant) -> dict[str, Tensor]:
    """Weights for scorediff's adaLN layers of a network whose conditioning is a constant: each layer ``name``
    (``blocks.i.adaLN_modulation``, ``output_layer.adaLN_modulation``) gets a zero weight and, as its bias, the
    output it must always give: ``constant(name) -> (weight (out, C), bias (out,))`` of the published layer,
    already evaluated at the published network's constant input (the bias is then ``W c + b``)."""
    state = {}
    for name in names:
        weight, bias = constant(name)
        state[f"{name}.weight"], state[f"{name}.bias"] = torch.zeros(weight.shape), bias  # weight may be meta
    return state


def adaln_names(n_blocks: int) -> list[str]:
    return [*(f"blocks.{i}.adaLN_modulation" for i in range(n_blocks)), "output_layer.adaLN_modulation"]


def identity_adaln(weight: Tensor, dim: int) -> Tensor:
    """The bias that makes a scorediff adaLN layer with a zero ``weight`` the identity, for a hidden size ``dim``:
    no shift and no scale, and in a block's six chunks (``6 dim`` outputs, not the final layer's ``2 dim``) gates
    of one."""
    pattern = [0.0, 0.0, 1.0, 0.0, 0.0, 1.0] if weight.shape[0] == 6 * dim else [0.0, 0.0]  # shift, scale(, gate)
    return torch.tensor(pattern).repeat_interleave(dim)


def in_file(path, error: CheckpointError) -> CheckpointError:
    """``error`` about what the model at ``path`` holds, its message naming ``path`` (with many models on disk, a
    key alone does not say which is garbled)."""
    return error if str(path) in str(error) else CheckpointError(f"{path}: {error}")
