"""What a training step optimises: score entropy diffusion, or the autoregressive baseline."""

from .autoregressive import AutoregressiveObjective
from .base import Objective
from .block_diffusion import BlockDiffusionObjective
from .diffusion import DiffusionObjective

OBJECTIVES = {"diffusion": DiffusionObjective, "autoregressive": AutoregressiveObjective}

__all__ = ["OBJECTIVES", "AutoregressiveObjective", "BlockDiffusionObjective", "DiffusionObjective", "Objective"]
