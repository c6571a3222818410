"""Geometric schedule: ``sigma_bar`` interpolates geometrically between ``sigma_min`` and ``sigma_max``."""

from __future__ import annotations

import math

from torch import Tensor

from ..errors import InputError
from .base import NoiseSchedule, as_float_tensor


class GeometricSchedule(NoiseSchedule):
    """SEDD's schedule for the uniform graph.

    .. math:: \\bar\\sigma(t) = \\sigma_{min}^{1-t} \\sigma_{max}^{t}, \\qquad
              \\sigma(t) = \\bar\\sigma(t) \\log(\\sigma_{max} / \\sigma_{min})

    Args:
        sigma_min (float): total noise at ``t = 0``.
        sigma_max (float): total noise at ``t = 1``.
    """

    def __init__(self, sigma_min: float = 1e-4, sigma_max: float = 20.0):
        if not 0 < sigma_min < sigma_max:
            raise InputError(f"need 0 < sigma_min < sigma_max; got sigma_min={sigma_min}, sigma_max={sigma_max}")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)

    def total(self, t: Tensor) -> Tensor:
        t = as_float_tensor(t)
        return self.sigma_min ** (1 - t) * self.sigma_max**t

    def rate(self, t: Tensor) -> Tensor:
        return self.total(t) * math.log(self.sigma_max / self.sigma_min)

    def __repr__(self) -> str:
        return f"GeometricSchedule(sigma_min={self.sigma_min}, sigma_max={self.sigma_max})"
