"""The sampling loop: start from the limit distribution and run the reverse chain to ``t = eps``."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import Tensor

from ..errors import InputError
from ..graphs import Graph
from ..graphs.base import sample_from
from ..schedules import NoiseSchedule
from ..types import ScoreFn
from .filters import check_temperature_top_p
from .first_hitting import sample_first_hitting
from .predictors import Predictor, denoise_probs, get_predictor, temper_moves


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
        raise InputError(
            f"condition tokens and mask must both have shape {shape}; got {tuple(tokens.shape)} and {tuple(mask.shape)}"
        )
    if mask.dtype != torch.bool:
        raise InputError(f"condition mask must be a bool tensor; got dtype {mask.dtype}")
    given = tokens[mask]
    if given.numel() and (int(given.min()) < 0 or int(given.max()) >= graph.num_tokens):
        raise InputError(
            f"conditioning tokens must be data tokens in [0, {graph.num_tokens}); "
            f"got values in [{int(given.min())}, {int(given.max())}]"
        )
    return tokens, mask


@dataclass
class SampleStats:
    """What one ``sample`` call cost.

    Attributes:
        nfe (int): network calls for the whole batch (a cached score counts only the calls it made; first-hitting,
            one per token).
        steps (int): sampler steps (first-hitting: the tokens it filled).
        seconds (float): wall time.
        tokens (int): tokens produced (batch x length).
        nfe_per_sequence (float): the network calls each sequence took part in, the mean over the batch. A cached
            score skips the sequences that did not change, so a sequence of ``L`` tokens takes part in at most
            ``L + 1`` calls while the batch, whose sequences change at different steps, may make more. None (the
            default) sets it to ``nfe``: every call took every sequence.
    """

    nfe: int
    steps: int
    seconds: float
    tokens: int
    nfe_per_sequence: float | None = None

    def __post_init__(self):
        if self.nfe_per_sequence is None:
            self.nfe_per_sequence = float(self.nfe)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / max(self.seconds, 1e-12)

    def to_dict(self) -> dict:
        return {**asdict(self), "tokens_per_second": self.tokens_per_second}


class _Counted:
    """A ``ScoreFn`` that counts its calls."""

    def __init__(self, score_fn: ScoreFn):
        self.score_fn, self.nfe = score_fn, 0

    def __call__(self, x_t: Tensor, sigma_bar: Tensor) -> Tensor:
        self.nfe += 1
        return self.score_fn(x_t, sigma_bar)


@torch.inference_mode()
def sample(
    score_fn: ScoreFn,
    graph: Graph,
    schedule: NoiseSchedule,
    shape: tuple[int, int],
    steps: int,
    predictor: Literal["analytic", "euler", "first_hitting"] | Predictor = "analytic",
    denoise: bool = True,
    condition: tuple[Tensor, Tensor] | None = None,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    eps: float = 1e-5,
    device: torch.device | str | None = None,
    temperature: float = 1.0,
    top_p: float = 1.0,
    greedy_tail: bool = False,
    return_stats: bool = False,
) -> Tensor | SampleTrajectory | tuple[Tensor | SampleTrajectory, SampleStats]:
    """Generate sequences by running the reverse chain, updating every position in parallel.

    Times run on the grid ``linspace(1, eps, steps + 1)``; each of the ``steps`` predictor updates
    moves one cell, then (with ``denoise``) a final analytic step at ``t = eps`` removes the
    remaining noise (every MASK of the absorbing graph is filled). That is ``steps + denoise`` calls
    of ``score_fn``, fewer when ``score_fn`` caches (``TimeIndependentScore``). ``predictor="first_hitting"``
    (absorbing graph only) fills one position per call instead, at exactly drawn times; it ignores ``steps``.

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
        predictor (str | Predictor): ``"analytic"`` (Tweedie tau-leaping), ``"euler"`` (tau-leaping) or
            ``"first_hitting"``.
        denoise (bool): finish with the denoising step.
        condition (tuple[Tensor, Tensor] | None): ``(tokens, mask)``, int64 and bool, both (B, L).
        generator (torch.Generator | None): source of all randomness.
        return_trajectory (bool): also return every intermediate state.
        eps (float): last time of the grid.
        device: where to sample; defaults to the device of the condition tokens, else the CPU.
        temperature (float): > 0; sharpens (< 1) or flattens where a position moves to (``temper_moves``).
        top_p (float): in (0, 1]; nucleus of where a position moves to.
        greedy_tail (bool): the final denoising step takes each position's most likely token.
        return_stats (bool): also return a ``SampleStats``.

    Returns:
        Tensor | SampleTrajectory: int64 (B, L) tokens, or a ``SampleTrajectory``; with ``return_stats`` a pair
        of that and the ``SampleStats``.
    """
    started = time.perf_counter()
    shape, step_rule = _check(shape, steps, predictor, eps, temperature, top_p, graph)
    tokens = mask = None
    if condition is not None:
        tokens, mask = _check_condition(condition, shape, graph)
        device = device if device is not None else tokens.device
        tokens, mask = tokens.to(device), mask.to(device)
    counted = score_fn if hasattr(score_fn, "nfe") else _Counted(score_fn)
    rows_before = getattr(counted, "rows_evaluated", None)  # a cached score counts the sequences of each call

    def clamp(x: Tensor) -> Tensor:
        return x if condition is None else torch.where(mask, tokens, x)

    x = clamp(graph.sample_limit(*shape, generator=generator, device=device))
    states, state_times = [x], [1.0]
    if step_rule == "first_hitting":
        x = sample_first_hitting(
            counted, graph, schedule, x, given=mask, temperature=temperature, top_p=top_p, generator=generator
        )
        states.append(x)
        state_times.append(0.0)
        steps = int((states[0] == graph.mask_id).sum(-1).max())
    else:
        times = torch.linspace(1.0, eps, int(steps) + 1, dtype=torch.float64).tolist()
        for t, t_next in zip(times[:-1], times[1:], strict=True):
            x = clamp(step_rule.step(counted, graph, schedule, x, t, t_next, generator, temperature, top_p))
            if return_trajectory:
                states.append(x)
                state_times.append(t_next)
        if denoise:
            probs = temper_moves(denoise_probs(counted, graph, schedule, x, times[-1]), x, temperature, top_p)
            x = clamp(probs.argmax(-1) if greedy_tail else sample_from(probs, generator))
            if return_trajectory:
                states.append(x)
                state_times.append(0.0)
    out = SampleTrajectory(tokens=x, states=states, times=state_times) if return_trajectory else x
    if not return_stats:
        return out
    per_sequence = None if rows_before is None else (counted.rows_evaluated - rows_before) / shape[0]
    stats = SampleStats(counted.nfe, int(steps), time.perf_counter() - started, shape[0] * shape[1], per_sequence)
    return out, stats


def _check(shape, steps, predictor, eps, temperature, top_p, graph):
    if len(shape) != 2 or min(shape) < 1:
        raise InputError(f"shape must be (batch_size, seq_len) with both >= 1; got {tuple(shape)}")
    if isinstance(steps, bool) or not hasattr(steps, "__index__") or steps.__index__() < 1:
        raise InputError(f"steps must be a whole number >= 1; got {steps!r}")
    if not 0 < eps < 1:
        raise InputError(f"eps must be in (0, 1); got {eps}")
    check_temperature_top_p(temperature, top_p)
    if predictor == "first_hitting":
        if graph.mask_id is None:
            raise InputError("predictor='first_hitting' needs the absorbing graph")
        step_rule = "first_hitting"
    else:
        step_rule = get_predictor(predictor) if isinstance(predictor, str) else predictor
    return (int(shape[0]), int(shape[1])), step_rule
