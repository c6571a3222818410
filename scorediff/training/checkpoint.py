"""Checkpoints: a directory with ``config.json``, ``model.safetensors``, ``ema.safetensors``, ``tokenizer.json``
and the trainer state (``trainer_state.safetensors`` for tensors, ``trainer_state.json`` for the rest).

Nothing is pickled. A checkpoint is written into a temporary directory and renamed into place, so a
crash never leaves a half-written one; only the last ``keep_last`` are kept.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from ..data.tokenizers import Tokenizer
from ..fileio import atomic_directory

CHECKPOINT_DIR = "checkpoints"
REQUIRED = ("config.json", "model.safetensors")


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be used: missing, incomplete, truncated or mismatched."""


def _contiguous(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


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
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for key, value in rest["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": rest["param_groups"]})


def save_checkpoint(
    run_dir: Path,
    step: int,
    config: dict,
    model_state: dict[str, Tensor],
    ema_state: dict[str, Tensor] | None,
    tokenizer: Tokenizer | None,
    trainer_tensors: dict[str, Tensor],
    trainer_info: dict,
    keep_last: int = 3,
) -> Path:
    """Write ``run_dir/checkpoints/step_XXXXXXXX`` atomically and prune older checkpoints."""
    final = Path(run_dir) / CHECKPOINT_DIR / f"step_{step:08d}"
    with atomic_directory(final) as tmp:
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        save_file(_contiguous(model_state), str(tmp / "model.safetensors"))
        if ema_state is not None:
            save_file(_contiguous(ema_state), str(tmp / "ema.safetensors"))
        if tokenizer is not None:
            tokenizer.save(tmp)
        save_file(_contiguous(trainer_tensors), str(tmp / "trainer_state.safetensors"))
        (tmp / "trainer_state.json").write_text(json.dumps(dict(trainer_info, step=step), indent=2))
    for old in list_checkpoints(run_dir)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    parent = Path(run_dir) / CHECKPOINT_DIR
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.glob("step_*") if p.is_dir() and (p / "trainer_state.json").exists())


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, given it or a run directory (its latest checkpoint)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} must be a directory (with config.json and model.safetensors)")
    if (path / "model.safetensors").exists() or (path / "pytorch_model.bin").exists():
        return path
    checkpoints = list_checkpoints(path)
    if checkpoints:
        return checkpoints[-1]
    if (path / "config.json").exists():
        raise CheckpointError(f"checkpoint {path} is incomplete: model.safetensors is missing")
    raise CheckpointError(f"{path} holds no checkpoint: expected config.json and model.safetensors, or checkpoints/")


def read_tensors(path: Path) -> dict[str, Tensor]:
    """Load a safetensors file, turning a truncated or corrupt file into a ``CheckpointError``."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing")
    try:
        return load_file(str(path))
    except Exception as error:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"checkpoint file {path} is truncated or corrupt ({error})") from None


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"checkpoint file {path} is not valid JSON ({error})") from None
