"""Exponential moving average of the weights, kept in float32."""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """``ema <- d ema + (1 - d) param`` with ``d = min(decay, (1 + step) / (10 + step))`` (a short warm-up)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = float(decay)
        self.shadow = {name: p.detach().float().clone() for name, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        params = [param.detach().float() for _, param in model.named_parameters()]
        torch._foreach_lerp_(list(self.shadow.values()), params, 1 - decay)

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The model's full state dict with EMA values in place of the parameters."""
        state = model.state_dict()
        return {
            name: self.shadow[name].to(value.dtype) if name in self.shadow else value for name, value in state.items()
        }

    def load(self, state: dict[str, torch.Tensor]) -> None:
        for name in self.shadow:
            self.shadow[name].copy_(state[name])

    @torch.no_grad()
    def swap(self, model: nn.Module) -> None:
        """Exchange the model's weights with the EMA weights (call twice to undo)."""
        for name, param in model.named_parameters():
            current = param.detach().float().clone()
            param.copy_(self.shadow[name])
            self.shadow[name].copy_(current)
