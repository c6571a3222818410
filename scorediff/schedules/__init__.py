"""Noise schedules ``sigma_bar(t)`` and the registry that names them."""

from __future__ import annotations

from ..errors import InputError
from .base import NoiseSchedule
from .geometric import GeometricSchedule
from .loglinear import LogLinearSchedule

SCHEDULES: dict[str, type[NoiseSchedule]] = {
    "geometric": GeometricSchedule,
    "loglinear": LogLinearSchedule,
}


def get_schedule(name: str, **kwargs) -> NoiseSchedule:
    """Build a registered schedule by name: ``get_schedule("geometric", sigma_max=20.0)``."""
    if name not in SCHEDULES:
        raise InputError(f"unknown noise schedule {name!r}; expected one of {sorted(SCHEDULES)}")
    return SCHEDULES[name](**kwargs)


__all__ = ["SCHEDULES", "GeometricSchedule", "LogLinearSchedule", "NoiseSchedule", "get_schedule"]
