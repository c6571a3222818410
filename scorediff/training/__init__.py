"""Training: the loop, distributed plumbing, EMA and checkpoints."""

from .sharded import export
from .trainer import TrainResult, train

__all__ = ["TrainResult", "export", "train"]
