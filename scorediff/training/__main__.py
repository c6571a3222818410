"""``python -m scorediff.training CONFIG [section.key=value ...]``: the trainer alone, e.g. under torchrun."""

import sys

from ..config import load_config
from .trainer import train

if __name__ == "__main__":
    arguments = sys.argv[1:]
    resume = "--resume" in arguments
    arguments = [a for a in arguments if a != "--resume"]
    result = train(load_config(arguments[0], arguments[1:]), resume=resume, progress=False)
    print(f"finished at step {result.step}: {result.checkpoint}")
