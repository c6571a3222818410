"""Published discrete diffusion models, read into scorediff's networks and objectives.

Each layout is a module with ``NAME``, ``matches(config)`` (its ``config.json``, parsed) and
``convert(config, state) -> (network, objective)``, which renames (or folds) the published weights into a scorediff
network and checks the names strictly: a missing or unexpected weight is an error that names it. Only JSON and
weights are read; no published modelling code is imported or run.
"""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import CheckpointError
from . import bd3lm, mdlm, radd, sedd
from .weights import read_weights

LAYOUTS = (sedd, radd, mdlm, bd3lm)


def published_layout(config: dict):
    """The layout module whose ``config.json`` this is, or None."""
    return next((layout for layout in LAYOUTS if layout.matches(config)), None)


def read_published(folder: Path, config: dict):
    """``(layout name, network, objective)`` of the published model in ``folder``."""
    layout = published_layout(config)
    if layout is None:
        raise CheckpointError(f"{folder / 'config.json'} is not a layout scorediff reads")
    state = read_weights(folder)
    try:
        network, objective = layout.convert(config, state)
    except CheckpointError:
        raise
    except (ValueError, KeyError, TypeError) as error:  # a config.json that lacks or garbles a field
        raise CheckpointError(f"{folder} is not a usable {layout.NAME} checkpoint ({error})") from None
    return layout.NAME, network.eval(), objective
