"""What may change when a run is resumed, and the checks that nothing else did: the configuration, and the
shapes of what a whole-weights checkpoint holds."""

from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint import (
    EMA_FILE,
    MODEL_FILE,
    TRAINER_FILE,
    TRAINER_TENSORS_FILE,
    CheckpointError,
    check_weights,
    read_json,
    safetensors_header,
)
from ..config import ConfigError

# Options that may differ when resuming: they change how the run is executed, not what it computes.
RESUMABLE_CHANGES = {
    "train.max_minutes",
    "train.out_dir",
    "train.run_name",
    "train.max_skipped_steps",
    "train.time_budget_minutes",
    "train.device",
    "train.compile",
    "train.parallel",
    "train.activation_checkpointing",
    "train.log_every",
    "train.max_steps",
    "train.eval_every",
    "train.save_every",
    "train.keep_last",
    "train.preview_samples",
    "train.eval_windows",
    "train.eval_num_t",
    "sampling.steps",
    "sampling.predictor",
    "sampling.length",
}


def check_resumable(saved: dict, current: dict, run_dir: Path) -> None:
    """Raise ``ConfigError`` naming the first option that differs from the run's and may not."""
    changed = [key for key in _diff(saved, current) if key not in RESUMABLE_CHANGES]
    if changed:
        key = changed[0]
        raise ConfigError(
            f"cannot resume {run_dir}: {key} differs from the run's config "
            f"({_lookup(saved, key)!r} there, {_lookup(current, key)!r} now)"
        )


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(a) | set(b)):
        name = f"{prefix}{key}"
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            keys += _diff(a[key], b[key], f"{name}.")
        elif a.get(key) != b.get(key):
            keys.append(name)
    return keys


def _lookup(values: dict, dotted: str):
    for part in dotted.split("."):
        values = values.get(part) if isinstance(values, dict) else None
    return values


def check_whole_state(state, checkpoint: Path) -> None:
    """The weights, EMA and optimizer tensors of a whole-weights ``checkpoint`` are the shapes ``state`` loads,
    read from the files' headers (a file copied in from another run loaded until a KeyError, or, for optimizer
    moments of other shapes, until the optimizer's kernel read past them: a segmentation fault)."""
    shapes = {name: tuple(value.shape) for name, value in state.model.state_dict().items()}
    check_weights(safetensors_header(checkpoint / MODEL_FILE), shapes, "this run's network", checkpoint / MODEL_FILE)
    check_weights(safetensors_header(checkpoint / EMA_FILE), shapes, "this run's network", checkpoint / EMA_FILE)
    check_optimizer_state(state.optimizer, checkpoint)


def check_optimizer_state(optimizer: torch.optim.Optimizer, checkpoint: Path) -> None:
    """AdamW's saved groups and moments are this optimizer's: as many groups of as many parameters, and each
    moment the shape of its parameter."""
    path = checkpoint / TRAINER_TENSORS_FILE
    saved = read_json(checkpoint / TRAINER_FILE)["optimizer"]
    groups = saved.get("param_groups")
    if _group_sizes(groups) != [len(group["params"]) for group in optimizer.param_groups]:
        raise CheckpointError(f"{checkpoint / TRAINER_FILE}: its optimizer's parameter groups are not this run's")
    params = [param for group in optimizer.param_groups for param in group["params"]]
    header = safetensors_header(path)
    known = {f"optimizer.{index}.{name}" for index in range(len(params)) for name in ("exp_avg", "exp_avg_sq", "step")}
    stray = sorted(set(header) - known)
    if stray:
        raise CheckpointError(f"{path} holds {stray[0]}, which this run's optimizer has no parameter for")
    for index, param in enumerate(params):
        entries = [header.get(f"optimizer.{index}.{moment}") for moment in ("exp_avg", "exp_avg_sq")]
        if entries == [None, None]:  # a parameter that never had a gradient has no moments
            continue
        for moment, entry in zip(("exp_avg", "exp_avg_sq"), entries, strict=True):
            if entry is None or tuple(entry["shape"]) != tuple(param.shape):
                got = "nothing" if entry is None else f"shape {tuple(entry['shape'])}"
                raise CheckpointError(
                    f"{path}: optimizer.{index}.{moment} must have shape {tuple(param.shape)}; got {got}"
                )


def _group_sizes(groups) -> list[int] | None:
    """The number of parameters of each saved group, or None when they are not a list of groups."""
    if not isinstance(groups, list) or not all(
        isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups
    ):
        return None
    return [len(group["params"]) for group in groups]
