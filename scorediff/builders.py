"""Build the graph, schedule and network a run configuration describes."""

from __future__ import annotations

import dataclasses

from .config import ConfigError, DiffusionConfig, RunConfig
from .graphs import Graph, get_graph
from .model import SEDDTransformer
from .schedules import NoiseSchedule, get_schedule


def build_graph(diffusion: DiffusionConfig, num_tokens: int) -> Graph:
    try:
        return get_graph(diffusion.graph, num_tokens)
    except ValueError as error:
        raise ConfigError(f"diffusion.graph: {error}") from None


def build_schedule(diffusion: DiffusionConfig) -> NoiseSchedule:
    if diffusion.schedule == "loglinear":
        return get_schedule("loglinear", eps=diffusion.eps)
    if diffusion.schedule == "geometric":
        return get_schedule("geometric", sigma_min=diffusion.sigma_min, sigma_max=diffusion.sigma_max)
    raise ConfigError(f"unknown diffusion.schedule {diffusion.schedule!r}; expected one of ['geometric', 'loglinear']")


def build_model(config: RunConfig, graph: Graph) -> SEDDTransformer:
    """The network for ``graph``: ``vocab_size`` follows the graph; sigma scaling only for the absorbing graph."""
    model_config = dataclasses.replace(
        config.model,
        vocab_size=graph.vocab_size,
        scale_by_sigma=config.model.scale_by_sigma and graph.mask_id is not None,
    )
    if not model_config.time_conditioning and graph.mask_id is None:
        raise ConfigError("model.time_conditioning=false (RADD) needs diffusion.graph=absorbing")
    try:
        return SEDDTransformer(model_config, graph.mask_id)
    except ValueError as error:
        raise ConfigError(f"model: {error}") from None
