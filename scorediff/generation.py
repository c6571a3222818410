"""One way to generate from any trained model: ``generate`` takes ``SamplingOptions`` (or their fields as keywords)
and returns a ``Generation``.

The command line (``sample``, ``infill``, ``--prompts``, ``eval-dna``), the previews during training, the playground,
the lm-eval adapter and the benchmarks all call it, so an option means the same everywhere; a run's ``sampling``
section builds its options (``SamplingConfig.options``), the one owner of the defaults.
"""

from __future__ import annotations

import operator

import torch
from torch import Tensor, nn

from .config import RunConfig
from .devices import torch_device
from .errors import InputError
from .objectives import Objective
from .objectives.base import Generation
from .sampling.options import SamplingOptions

__all__ = ["Generation", "SamplingOptions", "generate", "sampling_options"]


def sampling_options(config: RunConfig) -> SamplingOptions:
    """The options a run's ``sampling`` section sets for its objective (see ``SamplingConfig.options``)."""
    return config.sampling.options(config.objective)


def generate(
    objective: Objective,
    model: nn.Module,
    shape: tuple[int, int],
    options: SamplingOptions | None = None,
    *,
    condition: tuple[Tensor, Tensor] | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    **keywords,
) -> Generation:
    """Draw ``shape`` tokens from ``model`` through ``objective``; ``condition = (tokens, given)`` keeps the given
    tokens (a prompt, a prefix and suffix, any positions). ``seed`` (or a ``generator``) fixes every draw.

    Args:
        objective (Objective): how the model generates.
        model (nn.Module): its network.
        shape (tuple[int, int]): (batch_size, length); past the model's context, window by window.
        options (SamplingOptions | None): how to sample (default: ``SamplingOptions()``).
        condition (tuple[Tensor, Tensor] | None): int64 and bool, shape ``shape`` each.
        seed (int | None): seeds a new generator on ``device`` (ignored when ``generator`` is given).
        generator (torch.Generator | None): the source of randomness.
        device: where to generate.
        **keywords (Any): fields of ``SamplingOptions`` replacing those of ``options`` (``steps=64``).
    """
    options = SamplingOptions.of(options, **keywords)
    device = torch_device(device)
    if any(parameter.is_meta for parameter in model.parameters()):  # torch would fail deep inside the first call
        raise InputError("the model has no weights (loaded with device='meta'): load it on cpu or cuda to sample")
    shape = check_shape(shape)
    check_condition(condition, shape, objective.num_tokens)
    if generator is None and seed is not None:
        generator = torch.Generator(device=device).manual_seed(check_seed(seed))
    return objective.sample(model, shape, options, condition=condition, generator=generator, device=device)


#: seeds are 64-bit: what ``torch.Generator.manual_seed`` and the trainer's ``train.seed`` take
MAX_SEED = 2**63 - 1


def check_seed(seed: object, what: str = "seed") -> int:
    """``seed`` as an int in [0, 2**63 - 1]; an ``InputError`` naming ``what`` for anything else."""
    try:
        value = operator.index(seed) if not isinstance(seed, bool) else None
    except TypeError:
        value = None
    if value is None or not 0 <= value <= MAX_SEED:
        bits = value.bit_length() if value is not None else 0  # str() of an int past 4,300 digits raises
        shown = f"a {bits}-bit number" if bits > 100 else repr(seed)
        raise InputError(f"{what} must be a whole number in [0, 2**63 - 1]; got {shown}")
    return value


def check_shape(shape: object) -> tuple[int, int]:
    """``shape`` as (batch_size, length), both whole numbers >= 1."""
    try:
        rows, length = (operator.index(n) for n in shape)
    except (TypeError, ValueError):
        raise InputError(f"shape must be (batch_size, length) of whole numbers; got {shape!r}") from None
    if rows < 1 or length < 1:
        raise InputError(f"shape must be (batch_size, length) with both >= 1; got {(rows, length)}")
    return rows, length


def check_condition(condition: object, shape: tuple[int, int], num_tokens: int) -> None:
    """``condition`` is None or (tokens, given): integer and bool tensors of ``shape`` each, the given tokens data
    tokens in ``[0, num_tokens)``."""
    if condition is None:
        return
    if not (isinstance(condition, tuple | list) and len(condition) == 2):
        raise InputError("condition must be a pair (tokens, given) of tensors")
    tokens, given = condition
    if not isinstance(tokens, Tensor) or tokens.dtype.is_floating_point or tokens.dtype.is_complex:
        raise InputError(f"condition tokens must be an integer tensor; got {_kind(tokens)}")
    if not isinstance(given, Tensor) or given.dtype != torch.bool:
        raise InputError(f"condition given must be a bool tensor; got {_kind(given)}")
    for name, tensor in (("tokens", tokens), ("given", given)):
        if tuple(tensor.shape) != shape:
            raise InputError(f"condition {name} must have the shape asked for, {shape}; got {tuple(tensor.shape)}")
    outside = tokens[given & ((tokens < 0) | (tokens >= num_tokens))]
    if len(outside):  # torch's embedding would fail with "index out of range in self"
        raise InputError(f"condition tokens must be in [0, {num_tokens}) where given; got {int(outside[0])}")


def _kind(value: object) -> str:
    return f"dtype {value.dtype}" if isinstance(value, Tensor) else type(value).__name__
