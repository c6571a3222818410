"""Reading a checkpoint's files and checking them before anything is built from them.

A missing, truncated or garbled file is a ``CheckpointError``, and so are weights that do not fit the model they
are meant for. A safetensors file's header is read without its tensors, so a file's names, shapes, dtypes and
length are checked before anything is allocated. ``scorediff.checkpoint`` re-exports every name here.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor

from .errors import ScorediffError


class CheckpointError(ScorediffError):
    """A checkpoint directory that cannot be used: missing, incomplete, truncated or mismatched."""


def read_tensors(path: Path) -> dict[str, Tensor]:
    """Load a safetensors file, turning a truncated or corrupt file into a ``CheckpointError``."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing")
    try:
        return load_file(str(path))
    except Exception as error:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"checkpoint file {path} is truncated or corrupt ({error})") from None


def read_json(path: Path) -> dict:
    """Parse a JSON file of a checkpoint, turning a missing or garbled one into a ``CheckpointError``."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing")
    try:
        return json.loads(path.read_text())
    except (ValueError, RecursionError) as error:  # undecodable, an integer of 4,300+ digits; nested too deep
        raise CheckpointError(f"checkpoint file {path} is not valid JSON ({error})") from None


def safetensors_header(path: Path) -> dict[str, dict]:
    """The tensor entries of a safetensors file's header (``dtype``, ``shape``, ``data_offsets``), read without
    loading any tensor; ``CheckpointError`` when the file is missing, truncated or not safetensors."""
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 0 < size <= 100_000_000:
                raise ValueError(f"header length {size}")
            header = json.loads(handle.read(size))
        entries = {k: v for k, v in header.items() if k != "__metadata__"}
        end = max((v["data_offsets"][1] for v in entries.values()), default=0)
        if path.stat().st_size < 8 + size + end:
            raise ValueError("the file is shorter than its header says")
        return entries
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file {path} is missing") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
        raise CheckpointError(f"checkpoint file {path} is truncated or corrupt ({error})") from None


FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}
"""The dtypes of a safetensors header that are floating point."""


def check_weights(
    stored: Mapping[str, Tensor | dict],
    expected: Mapping[str, tuple[int, ...] | None],
    against: str,
    source: Path | None = None,
    optional: Collection[str] = frozenset(),
) -> None:
    """Check weights against what a model expects before they are loaded: the one check of every loader.

    In order: the names are exactly ``expected``'s (and perhaps some ``optional`` ones), each shape is the one
    ``expected`` gives (None: any), every weight is floating point, and every tensor is finite.

    Args:
        stored: name -> tensor, or name -> entry of a safetensors header (``dtype``, ``shape``: see
            ``safetensors_header``), so that a file's sizes are checked before anything is allocated.
        expected: name -> shape the model expects (None where the shape is checked elsewhere).
        against: what the weights must match, for the message (``"the model in config.json"``).
        source: the file the weights come from, for the message (None: not known here).
        optional: names that may be present beyond ``expected`` (buffers); their shapes are not checked.

    Raises:
        CheckpointError: ``the weights [in SOURCE] do not match AGAINST: ...`` or ``... cannot be used: ...``,
            naming the first offending weight.
    """
    weights = "the weights" if source is None else f"the weights in {source}"
    missing, unexpected = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected) - set(optional))
    if missing or unexpected:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        count = len(missing) + len(unexpected)
        raise CheckpointError(f"{weights} do not match {against}: {what} ({count} name(s) differ)")
    for name, value in stored.items():
        shape, dtype, floating = _describe(value, name, weights)
        if expected.get(name) is not None and shape != tuple(expected[name]):
            raise CheckpointError(
                f"{weights} do not match {against}: {name} has shape {shape}, expected {tuple(expected[name])} "
                f"(made for another vocabulary or size?)"
            )
        if not floating:
            raise CheckpointError(f"{weights} cannot be used: {name} is {dtype}; weights must be floating point")
        if isinstance(value, Tensor) and not value.is_meta and not bool(torch.isfinite(value).all()):
            raise CheckpointError(
                f"{weights} cannot be used: {name} holds NaN or infinite values; it cannot be sampled or scored"
            )


def _describe(value: Tensor | dict, name: str, weights: str) -> tuple[tuple[int, ...], str, bool]:
    """``(shape, dtype, floating point)`` of a tensor or of a safetensors header's entry."""
    if isinstance(value, Tensor):
        return tuple(value.shape), str(value.dtype), value.is_floating_point()
    try:
        return tuple(int(size) for size in value["shape"]), str(value["dtype"]), value["dtype"] in FLOAT_DTYPES
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{weights} cannot be used: the header's entry of {name} is garbled") from None


def safetensors_complete(path: Path) -> bool:
    """Whether a safetensors file is as long as its header says (a truncated copy is not), without reading it."""
    try:
        safetensors_header(path)
    except CheckpointError:
        return False
    return True
