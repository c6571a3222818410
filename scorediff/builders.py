"""Turn a run configuration into objects: the graph, the schedule, the objective and its network."""

from __future__ import annotations

import inspect
import json

from torch import nn

from .config import ConfigError, DiffusionConfig, RunConfig
from .graphs import Graph, get_graph
from .objectives import AutoregressiveObjective, BlockDiffusionObjective, DiffusionObjective, Objective
from .schedules import SCHEDULES, NoiseSchedule, get_schedule


def build_graph(diffusion: DiffusionConfig, num_tokens: int) -> Graph:
    """The registered graph ``diffusion.graph``, given the ``diffusion`` fields its builder names."""
    options = {"kappa": diffusion.kappa}
    try:
        if diffusion.base_frequencies:
            options["base_frequencies"] = [float(f) for f in diffusion.base_frequencies.split(",")]
        if diffusion.rate_matrix:
            options["rate_matrix"] = json.loads(diffusion.rate_matrix)
        elif diffusion.graph == "dense":
            raise ValueError("diffusion.graph=dense needs diffusion.rate_matrix (a JSON file or list of rows)")
        return get_graph(diffusion.graph, num_tokens, **options)
    except (ValueError, TypeError, RecursionError) as error:
        raise ConfigError(f"diffusion.graph={diffusion.graph}: {error}") from None


def build_schedule(diffusion: DiffusionConfig) -> NoiseSchedule:
    """The registered schedule ``diffusion.schedule``, given the ``diffusion`` fields its constructor names
    (a new schedule is one file, one registry line and, if it takes new parameters, their config fields)."""
    if diffusion.schedule not in SCHEDULES:
        raise ConfigError(f"unknown diffusion.schedule {diffusion.schedule!r}; expected one of {sorted(SCHEDULES)}")
    parameters = inspect.signature(SCHEDULES[diffusion.schedule]).parameters
    return get_schedule(diffusion.schedule, **{name: getattr(diffusion, name) for name in parameters})


def build_objective(config: RunConfig, num_tokens: int) -> Objective:
    """The objective ``config.objective`` names, over ``num_tokens`` data tokens; diffusion with
    ``model.block_size > 0`` is block diffusion."""
    if config.objective == "autoregressive":
        if config.model.block_size:
            raise ConfigError("model.block_size applies to block diffusion; this objective is autoregressive")
        return AutoregressiveObjective(num_tokens)
    if config.objective == "diffusion":
        diffusion = config.diffusion
        graph, schedule = build_graph(diffusion, num_tokens), build_schedule(diffusion)
        try:
            if config.model.block_size:
                return _block_objective(config, graph, schedule)
            return DiffusionObjective(
                graph,
                schedule,
                t_min=diffusion.t_min,
                antithetic=diffusion.antithetic,
                time_conditioning=config.model.time_conditioning,
                mask_count=diffusion.mask_count,
                label_dropout=diffusion.label_dropout,
                graph_name="absorbing" if diffusion.graph == "absorb" else diffusion.graph,
            )
        except ValueError as error:
            raise ConfigError(str(error)) from None
    raise ConfigError(f"unknown objective {config.objective!r}; expected one of ['autoregressive', 'diffusion']")


def _block_objective(config: RunConfig, graph: Graph, schedule: NoiseSchedule) -> BlockDiffusionObjective:
    if config.diffusion.graph not in ("absorbing", "absorb") or config.model.time_conditioning:
        raise ValueError(
            "block diffusion (model.block_size > 0) needs diffusion.graph=absorbing and model.time_conditioning=false"
        )
    diffusion = config.diffusion
    return BlockDiffusionObjective(
        graph,
        schedule,
        config.model.block_size,
        mask_count=diffusion.mask_count,
        antithetic=diffusion.antithetic,
        t_min=diffusion.t_min,
        label_dropout=diffusion.label_dropout,
    )


def build_model(config: RunConfig, objective: Objective) -> nn.Module:
    """The network for ``objective`` with the architecture of ``config.model``, whose ``vocab_size``, when set,
    must be the objective's (the tokenizer's and graph's count; it was replaced without a word), unless the run
    starts from a model (``train.init``), whose weights are checked against the network instead."""
    try:
        model = objective.build_model(config.model)
    except ValueError as error:
        raise ConfigError(f"model: {error}") from None
    if config.model.vocab_size not in (0, model.config.vocab_size) and not config.train.init:
        raise ConfigError(
            f"model.vocab_size is the tokenizer's and graph's count, {model.config.vocab_size:,} for this run; "
            f"got {config.model.vocab_size:,} (leave it at 0)"
        )
    return model
