"""``scorediff train`` (the arguments after the output folder) that records the clean tokens ``x_0`` of every
micro-batch a training step's loss is taken on, in order, into ``OUTPUT/rank{RANK}.pt``."""

import os
import sys
from pathlib import Path

import torch

from scorediff.cli import main
from scorediff.objectives.diffusion import DiffusionObjective

consumed: list[torch.Tensor] = []
loss = DiffusionObjective.loss


def recording_loss(self, network, batch):
    if torch.is_grad_enabled():  # a training step, not an evaluation
        consumed.append(batch["x_0"].clone())
    return loss(self, network, batch)


if __name__ == "__main__":
    output, argv = Path(sys.argv[1]), sys.argv[2:]
    DiffusionObjective.loss = recording_loss
    code = main(argv)
    torch.save(consumed, output / f"rank{os.environ.get('RANK', '0')}.pt")
    sys.exit(code)
