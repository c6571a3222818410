"""Where a loaded network's weights live and in what dtype: the one owner of building a network without storage,
reading its weights straight into the dtype and device asked for, and materialising it from them.

``scorediff.load(path, dtype=torch.bfloat16)`` must need about the bf16 size of the model, as transformers'
``from_pretrained(torch_dtype=..., low_cpu_mem_usage=True)`` does. So the network is built on the meta device
(shapes, no storage), each stored tensor is read, converted and placed one at a time, and the network takes the
converted tensors themselves (``load_state_dict(assign=True)``): no float32 copy of the whole model is ever held,
and no second copy of the weights sits beside the network. Buffers that are computed rather than saved (the rotary
tables) are recomputed on the device by their module's ``reset_buffers``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from torch import Tensor, nn

from .checkpoint import CheckpointError, safetensors_header
from .errors import InputError

DTYPES = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float64": torch.float64,
}
"""The dtypes a model may be loaded in, by name."""


def model_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """The ``torch.dtype`` asked for: a name of ``DTYPES`` or one of its values; None is float32.

    Raises:
        InputError: any other value, in one line naming the valid ones.
    """
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise InputError(f"dtype must be one of {', '.join(DTYPES)} (or that torch.dtype); got {dtype!r}")


def empty_network(network: Callable[..., nn.Module], *args) -> nn.Module:
    """``network(*args)`` built on the meta device: every parameter and buffer has its shape and no storage. The
    loader then gives it the weights read in their final dtype (``load_state_dict(..., assign=True)``) and
    passes it to ``place``."""
    with torch.device("meta"):
        return network(*args)


def placed(tensor: Tensor, dtype: torch.dtype, device: torch.device, name: str = "a weight") -> Tensor:
    """A copy of ``tensor`` of its own on ``device``, floating point converted to ``dtype`` (other dtypes kept, for
    the weight checks to refuse): never a view of a file's memory map, so the map can be released."""
    target = dtype if tensor.is_floating_point() else tensor.dtype
    result = tensor.to(device=device, dtype=target, copy=True)
    if (
        target == torch.float16
        and not result.is_meta
        and not torch.isfinite(result).all()
        and torch.isfinite(tensor).all()
    ):
        largest = torch.finfo(torch.float16).max
        raise CheckpointError(f"{name} exceeds float16's range (+-{largest:g}); load the model in bfloat16")
    return result


STORED_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
"""The dtypes of a safetensors header that a weight may be stored in, as torch's."""


def read_safetensors(
    path: Path, dtype: torch.dtype, device: torch.device, check: Callable[[str, Tensor], None] | None = None
) -> dict[str, Tensor]:
    """The tensors of a safetensors file, each ``placed`` as it is read; on the meta device, shapes and dtypes from
    the file's header alone, nothing read (``check`` is not called: there are no values).

    The file is opened again for each tensor: safetensors maps the whole file, and the pages read through a map
    stay resident (and counted in the process's RSS) until it is closed, so one map for the whole file would hold
    the file's size in memory beside the converted weights. Each tensor's map is closed once it is converted.

    Args:
        check: called with each tensor's name and stored value before it is converted (the finite check of
            ``checkpoint.check_weights``).
    """
    if device.type == "meta":
        return {name: _meta(name, entry, dtype, path) for name, entry in safetensors_header(path).items()}
    state = {}
    for name in safetensors_header(path):  # a missing, truncated or garbled file: CheckpointError here
        try:
            with safe_open(str(path), framework="pt") as handle:
                stored = handle.get_tensor(name)
        except Exception as error:  # safetensors raises its own error types for corrupt files
            raise CheckpointError(f"checkpoint file {path} is truncated or corrupt ({error})") from None
        if check is not None:
            check(name, stored)
        state[name] = placed(stored, dtype, device, name)
        del stored  # its map is released here, before the next tensor's is opened
    return state


def _meta(name: str, entry: dict, dtype: torch.dtype, path: Path) -> Tensor:
    """A tensor without storage of the shape a header ``entry`` gives, floating point in ``dtype``."""
    try:
        stored, shape = STORED_DTYPES[entry["dtype"]], [int(size) for size in entry["shape"]]
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"checkpoint file {path}: {name} has a dtype or shape scorediff does not read") from None
    return torch.empty(shape, dtype=dtype if stored.is_floating_point else stored, device="meta")


def place(model: nn.Module, dtype: torch.dtype, device: torch.device) -> nn.Module:
    """Every parameter of ``model`` in ``dtype`` on ``device`` (those already there are not copied), and the buffers
    that are computed, not saved, recomputed there in their own precision by their module's ``reset_buffers``.

    Raises:
        RuntimeError: a tensor still on the meta device, or a module whose non-persistent buffers no
            ``reset_buffers`` recomputes: a network this loader cannot materialise (a bug, not a user's mistake).
    """
    for name, module in model.named_modules():
        if module._non_persistent_buffers_set:
            if not hasattr(module, "reset_buffers"):
                raise RuntimeError(f"{name or 'the network'} has computed buffers but no reset_buffers")
            module.reset_buffers(device)
    on_meta = {}  # id of a Parameter -> (it, its meta copy)
    for parameter in model.parameters():  # not ``model.to``, which would round the float32 tables as well
        target = dtype if parameter.is_floating_point() else parameter.dtype
        if (parameter.dtype, parameter.device) == (target, device) or (parameter.is_meta and device.type != "meta"):
            continue  # in place already, or never loaded (refused below)
        if device.type == "meta":
            on_meta[id(parameter)] = parameter, nn.Parameter(parameter.to(device, target), parameter.requires_grad)
        else:
            parameter.data = parameter.data.to(device=device, dtype=target)
    _replace_parameters(model, on_meta)
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_meta and device.type != "meta":
            raise RuntimeError(f"{name} was not loaded: it is still on the meta device")
    return model.eval()


def _replace_parameters(model: nn.Module, replacements: dict[int, tuple[nn.Parameter, nn.Parameter]]) -> None:
    """Register each new Parameter wherever its old one is (by ``id``): a tied weight stays one Parameter.

    Storage cannot be swapped for none (``.data`` refuses a meta tensor), so the Parameter itself is replaced in
    its modules; ``torch.utils.swap_tensors`` would do it in place, but only from torch 2.3 on.
    """
    for module in model.modules():
        for name, parameter in module._parameters.items():
            old, new = replacements.get(id(parameter), (None, None))
            if old is parameter:
                module._parameters[name] = new
