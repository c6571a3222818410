"""What may change when a run is resumed, and the check that nothing else did."""

from __future__ import annotations

from pathlib import Path

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
