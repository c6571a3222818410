"""Noise schedules: how much noise ``sigma_bar(t)`` the forward chain has added by time ``t``."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor


class NoiseSchedule(ABC):
    """``total(t) = sigma_bar(t) = int_0^t sigma(s) ds`` and ``rate(t) = sigma(t)``; elementwise on tensors.

    ``t`` is in [0, 1] with ``t = 0`` the data and ``t = 1`` the noise.
    """

    @abstractmethod
    def total(self, t: Tensor) -> Tensor:
        """Total noise ``sigma_bar(t)``, same shape and dtype as ``t``."""

    @abstractmethod
    def rate(self, t: Tensor) -> Tensor:
        """Noise rate ``sigma(t) = d sigma_bar / dt``, same shape and dtype as ``t``."""

    def __call__(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(total(t), rate(t))``."""
        return self.total(t), self.rate(t)


def as_float_tensor(t: Tensor | float) -> Tensor:
    t = torch.as_tensor(t)
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())
