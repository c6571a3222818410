"""The sampling loop: start from the limit distribution and run the reverse chain to ``t = eps``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..graphs import Graph
from ..graphs.base import sample_from
from ..schedules import NoiseSchedule
from ..types import ScoreFn
from .predictors import Predictor, denoise_probs, get_predictor


@dataclass
class SampleTrajectory:
    """What ``sample(..., return_trajectory=True)`` returns.

    Attributes:
        tokens (Tensor): int64 (B, L), the final samples.
        states (list[Tensor]): int64 (B, L) each: the start, the state after every step, and the final
            samples (``steps + 2`` entries with ``denoise``, ``steps + 1`` without).
        times (list[float]): the time of each state (the last, after denoising, is 0).
    """

    tokens: Tensor
    states: list[Tensor]
    times: list[float]


def _check_condition(condition, shape: tuple[int, int], graph: Graph) -> tuple[Tensor, Tensor]:
    tokens, mask = condition
    if tuple(tokens.shape) != shape or tuple(mask.shape) != shape:
        raise ValueError(
            f"condition tokens and mask must both have shape {shape}; got {tuple(tokens.shape)} and {tuple(mask.shape)}"
        )
    if mask.dtype != torch.bool:
        raise ValueError(f"condition mask must be a bool tensor; got dtype {mask.dtype}")
    given = tokens[mask]
    if given.numel() and (int(given.min()) < 0 or int(given.max()) >= graph.num_tokens):
        raise ValueError(
            f"conditioning tokens must be data tokens in [0, {graph.num_tokens}); "
            f"got values in [{int(given.min())}, {int(given.max())}]"
        )
    return tokens, mask


@torch.no_grad()
def sample(
    score_fn: ScoreFn,
    graph: Graph,
    schedule: NoiseSchedule,
    shape: tuple[int, int],
    steps: int,
    predictor: Literal["analytic", "euler"] | Predictor = "analytic",
    denoise: bool = True,
    condition: tuple[Tensor, Tensor] | None = None,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    eps: float = 1e-5,
    device: torch.device | str | None = None,
) -> Tensor | SampleTrajectory:
    """Generate sequences by running the reverse chain, updating every position in parallel.

    Times run on the grid ``linspace(1, eps, steps + 1)``; each of the ``steps`` predictor updates
    moves one cell, then (with ``denoise``) a final analytic step at ``t = eps`` removes the
    remaining noise (every MASK of the absorbing graph is filled). That is ``steps + denoise`` calls
    of ``score_fn``.

    Conditioning (infilling) clamps ``tokens[mask]`` before every step and in the output, so given
    tokens are never changed. With the absorbing graph this samples the exact conditional
    distribution when the score is exact: an unmasked token at time ``t`` is the clean token, so the
    ratios at the other positions are those of the conditional. With the uniform graph a clamped
    token at time ``t`` could have been a noised one, so clamping is an approximation of conditioning.

    Args:
        score_fn (ScoreFn): ``(x_t, sigma_bar) -> log_score``.
        graph (Graph): forward process the model was trained with.
        schedule (NoiseSchedule): noise schedule the model was trained with.
        shape (tuple[int, int]): ``(batch_size, seq_len)``.
        steps (int): number of predictor steps (>= 1).
        predictor (str | Predictor): ``"analytic"`` (Tweedie tau-leaping) or ``"euler"`` (tau-leaping).
        denoise (bool): finish with the denoising step.
        condition (tuple[Tensor, Tensor] | None): ``(tokens, mask)``, int64 and bool, both (B, L).
        generator (torch.Generator | None): source of all randomness.
        return_trajectory (bool): also return every intermediate state.
        eps (float): last time of the grid.
        device: where to sample; defaults to the device of the condition tokens, else the CPU.

    Returns:
        Tensor | SampleTrajectory: int64 (B, L) tokens, or a ``SampleTrajectory``.
    """
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (batch_size, seq_len) with both >= 1; got {tuple(shape)}")
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    if not 0 < eps < 1:
        raise ValueError(f"eps must be in (0, 1); got {eps}")
    shape = (int(shape[0]), int(shape[1]))
    step_rule = get_predictor(predictor) if isinstance(predictor, str) else predictor
    if condition is not None:
        tokens, mask = _check_condition(condition, shape, graph)
        device = device if device is not None else tokens.device
        tokens, mask = tokens.to(device), mask.to(device)

    def clamp(x: Tensor) -> Tensor:
        return x if condition is None else torch.where(mask, tokens, x)

    times = torch.linspace(1.0, eps, int(steps) + 1, dtype=torch.float64).tolist()
    x = clamp(graph.sample_limit(*shape, generator=generator, device=device))
    states, state_times = [x], [1.0]
    for t, t_next in zip(times[:-1], times[1:], strict=True):
        x = clamp(step_rule.step(score_fn, graph, schedule, x, t, t_next, generator))
        if return_trajectory:
            states.append(x)
            state_times.append(t_next)
    if denoise:
        x = clamp(sample_from(denoise_probs(score_fn, graph, schedule, x, times[-1]), generator))
        if return_trajectory:
            states.append(x)
            state_times.append(0.0)
    if return_trajectory:
        return SampleTrajectory(tokens=x, states=states, times=state_times)
    return x
