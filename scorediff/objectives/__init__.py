"""What a training step optimises: score entropy diffusion, or the autoregressive baseline."""

from .autoregressive import AutoregressiveObjective
from .base import Objective
from .diffusion import DiffusionObjective

OBJECTIVES = {"diffusion": DiffusionObjective, "autoregressive": AutoregressiveObjective}

__all__ = ["OBJECTIVES", "AutoregressiveObjective", "DiffusionObjective", "Objective"]
