"""Training: the loop, distributed plumbing, EMA and checkpoints."""

from .trainer import TrainResult, train

__all__ = ["TrainResult", "train"]
