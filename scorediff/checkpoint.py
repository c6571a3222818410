"""The checkpoint format, owned here alone: file names, writing, listing and reading (the checks of its files,
in ``scorediff.checkpoint_checks``, are re-exported here).

A checkpoint is a directory:

- ``config.json``: the resolved run configuration, headed by what the model *is*, stated outright:
  ``format``, ``objective`` (``diffusion`` or ``autoregressive``), ``graph`` (``absorbing``, ``uniform`` or
  null), ``num_tokens`` (data tokens), ``mask_id`` (the absorbing mask state or null) and ``vocab_size``
  (the network's input vocabulary);
- ``model.safetensors`` and ``ema.safetensors``: raw and averaged weights;
- ``tokenizer.json``;
- ``trainer_state.safetensors`` (optimizer tensors) and ``trainer_state.json`` (step, tokens seen, ...);
- a LoRA run's ``lora.safetensors``: its adapters (peft's names), the averaged ones behind ``ema.``, for resuming;
  its ``model.safetensors`` and ``ema.safetensors`` hold the merged weights, so nothing else reads this file;
- an FSDP run's ``sharded/`` (``torch.distributed.checkpoint``: model, optimizer, EMA and every rank's RNG, each
  process writing its shards) in place of the weight and optimizer files; its last checkpoint also holds
  ``model.safetensors`` and ``ema.safetensors`` whole, which is all that loaders read. The shards are for resuming
  one's own run only: their index (``sharded/.metadata``) is a pickle.

Nothing is pickled. A checkpoint is written into a temporary directory and renamed into place, so a crash
never leaves a half-written one where a loader would pick it up; only the last ``keep_last`` are kept.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor

from .checkpoint_checks import (
    FLOAT_DTYPES,
    CheckpointError,
    check_weights,
    read_json,
    read_tensors,
    safetensors_complete,
    safetensors_header,
)
from .fileio import atomic_directory

FORMAT = 1
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
TRAINER_TENSORS_FILE = "trainer_state.safetensors"
TRAINER_FILE = "trainer_state.json"
LORA_FILE = "lora.safetensors"
SHARDED_DIR = "sharded"
SHARDED_INDEX = ".metadata"
CHECKPOINT_DIR = "checkpoints"
HEADER_KEYS = ("format", "objective", "graph", "num_tokens", "mask_id", "vocab_size")

__all__ = [
    "FORMAT",
    "CONFIG_FILE",
    "MODEL_FILE",
    "EMA_FILE",
    "TRAINER_TENSORS_FILE",
    "TRAINER_FILE",
    "LORA_FILE",
    "SHARDED_DIR",
    "SHARDED_INDEX",
    "CHECKPOINT_DIR",
    "HEADER_KEYS",
    "FLOAT_DTYPES",
    "CheckpointError",
    "Header",
    "config_json",
    "split_config",
    "optimizer_tensors",
    "load_optimizer",
    "save_checkpoint",
    "prune_checkpoints",
    "list_checkpoints",
    "resolve_checkpoint",
    "read_tensors",
    "read_json",
    "read_config",
    "safetensors_header",
    "check_weights",
    "safetensors_complete",
    "checkpoint_intact",
    "trainer_state",
]


@dataclass(frozen=True)
class Header:
    """What a checkpoint's model is, as ``config.json`` states it."""

    objective: str
    graph: str | None
    num_tokens: int
    mask_id: int | None
    vocab_size: int

    def to_dict(self) -> dict:
        return {"format": FORMAT, **{key: getattr(self, key) for key in HEADER_KEYS[1:]}}


def config_json(header: Header, config: dict) -> str:
    """The text of ``config.json``: the header keys first, then the run configuration's sections.

    ``objective`` is also a field of the run configuration; the two must agree.
    """
    if config.get("objective", header.objective) != header.objective:
        raise ValueError(f"the header's objective {header.objective!r} differs from the config's")
    return json.dumps({**header.to_dict(), **config}, indent=2)


def split_config(raw: dict, source: Path) -> tuple[Header, dict]:
    """``config.json``'s header and the run configuration under it; ``CheckpointError`` when the header is off."""
    if not isinstance(raw, dict):
        raise CheckpointError(f"{source} must hold a JSON object; got {type(raw).__name__}")
    if raw.get("format") != FORMAT:
        raise CheckpointError(f"{source} is not a scorediff checkpoint config of format {FORMAT}")
    try:
        header = Header(
            objective=str(raw["objective"]),
            graph=None if raw["graph"] is None else str(raw["graph"]),
            num_tokens=_whole(raw["num_tokens"]),
            mask_id=None if raw["mask_id"] is None else _whole(raw["mask_id"]),
            vocab_size=_whole(raw["vocab_size"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        keys = ", ".join(HEADER_KEYS)
        raise CheckpointError(f"{source}: its header ({keys}) is incomplete or wrong ({error})") from None
    return header, {key: value for key, value in raw.items() if key == "objective" or key not in HEADER_KEYS}


def _whole(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a non-negative integer, got {value!r}")
    return value


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    """Split an optimizer state dict into flat tensors and a JSON-able rest."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{name}"] = value
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], rest: dict) -> None:
    """Restore what ``optimizer_tensors`` split."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for key, value in rest["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": rest["param_groups"]})


def _contiguous(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def save_checkpoint(
    run_dir: Path,
    step: int,
    header: Header,
    config: dict,
    model_state: dict[str, Tensor],
    ema_state: dict[str, Tensor] | None,
    tokenizer,
    optimizer: torch.optim.Optimizer,
    trainer_info: dict,
    keep_last: int = 3,
    adapters: dict[str, Tensor] | None = None,
) -> Path:
    """Write ``run_dir/checkpoints/step_XXXXXXXX`` atomically and prune older checkpoints; ``adapters``: a LoRA
    run's, written to ``LORA_FILE``."""
    final = Path(run_dir) / CHECKPOINT_DIR / f"step_{step:08d}"
    tensors, rest = optimizer_tensors(optimizer)
    with atomic_directory(final) as tmp:
        (tmp / CONFIG_FILE).write_text(config_json(header, config))
        save_file(_contiguous(model_state), str(tmp / MODEL_FILE))
        if ema_state is not None:
            save_file(_contiguous(ema_state), str(tmp / EMA_FILE))
        if tokenizer is not None:
            tokenizer.save(tmp)
        if adapters is not None:
            save_file(_contiguous(adapters), str(tmp / LORA_FILE))
        save_file(_contiguous(tensors), str(tmp / TRAINER_TENSORS_FILE))
        (tmp / TRAINER_FILE).write_text(json.dumps(dict(trainer_info, step=step, optimizer=rest), indent=2))
    prune_checkpoints(run_dir, keep_last)
    return final


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> None:
    """Remove all but the newest ``keep_last`` complete checkpoints of ``run_dir`` (0: keep every one)."""
    for old in list_checkpoints(run_dir)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    parent = Path(run_dir) / CHECKPOINT_DIR
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.glob("step_*") if p.is_dir() and (p / TRAINER_FILE).exists())


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, given it or a run directory (its latest checkpoint)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} must be a directory (with {CONFIG_FILE} and {MODEL_FILE})")
    if any((path / name).exists() for name in (MODEL_FILE, "pytorch_model.bin", "model.safetensors.index.json")):
        return path  # the last: a published model's weights in shards (converters.weights.read_shards)
    checkpoints = list_checkpoints(path)
    if checkpoints:
        return resolve_checkpoint(checkpoints[-1])  # an FSDP run's last may hold shards only
    if (path / SHARDED_DIR).is_dir():
        raise CheckpointError(
            f"checkpoint {path} holds training shards only (an FSDP run's intermediate checkpoint); write its "
            f"whole weights with `scorediff export {path}`, or load the run's last checkpoint"
        )
    if (path / CONFIG_FILE).exists():
        raise CheckpointError(f"checkpoint {path} is incomplete: {MODEL_FILE} is missing")
    raise CheckpointError(f"{path} holds no checkpoint: expected {CONFIG_FILE} and {MODEL_FILE}, or {CHECKPOINT_DIR}/")


def read_config(directory: Path) -> tuple[Header, dict]:
    """The header and the run configuration of a checkpoint or run directory's ``config.json``."""
    path = Path(directory) / CONFIG_FILE
    return split_config(read_json(path), path)


def checkpoint_intact(checkpoint: Path) -> bool:
    """Every file of a training checkpoint present, parseable and complete (cheap: no tensor is read)."""
    try:
        read_config(checkpoint)
        for name in (TRAINER_FILE, "tokenizer.json"):
            read_json(checkpoint / name)
    except CheckpointError:
        return False
    if (checkpoint / SHARDED_DIR).is_dir():  # written whole before the folder was renamed into place
        whole = [name for name in (MODEL_FILE, EMA_FILE) if (checkpoint / name).exists()]
        return (checkpoint / SHARDED_DIR / SHARDED_INDEX).is_file() and all(
            safetensors_complete(checkpoint / name) for name in whole
        )
    optional = [LORA_FILE] if (checkpoint / LORA_FILE).exists() else []
    files = (MODEL_FILE, EMA_FILE, TRAINER_TENSORS_FILE, *optional)
    return all(safetensors_complete(checkpoint / name) for name in files)


def trainer_state(checkpoint: Path) -> dict:
    """``trainer_state.json`` (step, tokens seen, ...) or an empty dict when the checkpoint has none."""
    path = checkpoint / TRAINER_FILE
    state = read_json(path) if path.exists() else {}
    if not isinstance(state, dict) or not isinstance(state.get("step", 0), int):
        raise CheckpointError(f"{path} must hold a JSON object with an integer step")
    return state
