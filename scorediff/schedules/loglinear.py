"""Log-linear schedule: the masked fraction ``1 - e^{-sigma_bar(t)}`` grows linearly in ``t``."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import InputError
from .base import NoiseSchedule, as_float_tensor


class LogLinearSchedule(NoiseSchedule):
    """SEDD's schedule for the absorbing graph.

    .. math:: \\bar\\sigma(t) = -\\log(1 - (1 - \\epsilon) t), \\qquad
              \\sigma(t) = \\frac{1 - \\epsilon}{1 - (1 - \\epsilon) t}

    Args:
        eps (float): keeps ``sigma_bar(1) = -log(eps)`` finite.
    """

    def __init__(self, eps: float = 1e-3):
        if not 0 < eps < 1:
            raise InputError(f"eps must be in (0, 1); got {eps}")
        self.eps = float(eps)

    def total(self, t: Tensor) -> Tensor:
        return -torch.log1p(-(1 - self.eps) * as_float_tensor(t))

    def rate(self, t: Tensor) -> Tensor:
        return (1 - self.eps) / (1 - (1 - self.eps) * as_float_tensor(t))

    def __repr__(self) -> str:
        return f"LogLinearSchedule(eps={self.eps})"
