"""Fit the learning-rate schedule to a time budget, so a slow machine still ends its schedule in time.

A run with ``train.time_budget_minutes > 0`` measures its own step time over a few steps after a warm-up
(in which ``torch.compile`` does its work), estimates what each evaluation will cost from two timed forward
passes, and sets ``train.max_steps`` to the steps that fit in what is left of the budget, never more than
the configured ``max_steps``. The fit is made again while the learning rate of the steps already run does not
depend on the schedule's length: at the end of the learning-rate warm-up (the first steps after compilation
run slower than the rest: 10% on 2 cores of an EPYC), and with a warmup-stable-decay schedule
(``optim.decay_fraction < 1``) every ``REFIT_EVERY`` steps until its decay starts, each time from the steps
since the previous fit and the time actually left, so the schedule fills the budget however the machine's
speed drifts. Evaluations and checkpoint writes are not counted as step time. Each fit is written into the
run's config (and so into every checkpoint), so a run resumed after the last fit continues the same schedule.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from ..config import TrainConfig
from . import distributed
from .optim import decay_start
from .step import TrainState

WARMUP_STEPS = 5
"""Steps left out of the measurement: compilation, first-touch allocations."""
PROBE_STEPS = 20
"""Steps timed after the warm-up."""
FIRST_FIT = WARMUP_STEPS + PROBE_STEPS
"""The step after which the schedule is first fitted."""
REFIT_EVERY = 100
"""Steps between the later fits of a warmup-stable-decay schedule."""
SAFETY = 0.97
"""Fraction of the budget the run may fill: the rest (16 s of nine minutes) is kept for timing noise after the
last fit, checkpoint writes and the end of the run, however late that fit comes."""
STOP_MARGIN = 0.07
"""A budgeted run is stopped, whatever its schedule, this fraction of its budget past it (9.63 minutes for nine),
and at least ``STOP_MARGIN_SECONDS``: a guard against a machine that slows down after the last fit, far enough
past the budget that a run the fit went right for never meets it. It follows the budget, so raising the budget
raises the stop."""
STOP_MARGIN_SECONDS = 30.0
"""The least margin of that stop: the final evaluation and checkpoint take seconds whatever the budget."""


def stop_seconds(train_config: TrainConfig) -> float:
    """Seconds of training after which the run stops and saves: ``train.max_minutes`` when set, else the
    budget plus its margin, the earlier of the two when both are set (inf: neither)."""
    limits = [train_config.max_minutes * 60] if train_config.max_minutes > 0 else []
    if train_config.time_budget_minutes > 0:
        budget = train_config.time_budget_minutes * 60
        limits.append(budget + max(STOP_MARGIN * budget, STOP_MARGIN_SECONDS))
    return min(limits, default=math.inf)


def unfinished_schedule_warning(train_config: TrainConfig) -> str | None:
    """One line for a run whose ``max_minutes`` stops it before its ``time_budget_minutes`` is spent: the schedule,
    fitted to the budget, would then stop with the learning rate still high (None when the two agree)."""
    budget, stop = train_config.time_budget_minutes, train_config.max_minutes
    if budget <= 0 or stop <= 0 or stop >= budget:
        return None
    return (
        f"warning: train.max_minutes={stop:g} stops the run before its time budget (train.time_budget_minutes="
        f"{budget:g}) is spent, so the learning-rate schedule fitted to the budget will not finish; set "
        f"train.time_budget_minutes={stop:g} instead (a budgeted run stops soon after its budget anyway)"
    )


@dataclass
class BudgetProbe:
    """Times the steps of a run that starts before ``WARMUP_STEPS``: steps ``WARMUP_STEPS + 1 .. FIRST_FIT`` for
    the first fit, then those since the previous fit for each later one: ``refit_step`` (the end of the
    learning-rate warm-up; 0: none) and every ``REFIT_EVERY`` steps after it (or after ``FIRST_FIT``) while they
    come before the schedule's decay. Time passed to ``exclude`` (evaluations, checkpoints) does not count."""

    start_step: int
    refit_step: int = 0
    cap: int = 0
    """The configured ``train.max_steps``: a fit may lengthen an earlier fit's schedule up to it."""
    started_at: float | None = None
    window_start: int = 0
    excluded: float = 0.0
    eval_seconds: float | None = None
    """The estimate of one evaluation's cost, kept for the later fits."""

    @staticmethod
    def refit_at(warmup_steps: int) -> int:
        """The step of the second fit for a warm-up of ``warmup_steps``: its end, if that leaves ``PROBE_STEPS``
        to time after the first fit (0: no second fit)."""
        return warmup_steps if warmup_steps >= FIRST_FIT + 1 + PROBE_STEPS else 0

    def is_fit(self, step: int) -> bool:
        """Whether the schedule is fitted after ``step`` (when its decay has not started)."""
        anchor = max(FIRST_FIT, self.refit_step)
        return step in (FIRST_FIT, self.refit_step) or (step > anchor and (step - anchor) % REFIT_EVERY == 0)

    def wants(self, state: TrainState) -> bool:
        """Whether ``after_step`` should see this step: a fit may still come."""
        tc = state.config.train
        last = max(FIRST_FIT, decay_start(state.config.optim, tc.max_steps))
        return tc.time_budget_minutes > 0 and self.start_step < WARMUP_STEPS and state.step <= last

    def after_step(self, state: TrainState) -> float | None:
        """Call after every step; returns the measured seconds per step when the schedule is to be fitted."""
        if state.step == WARMUP_STEPS:
            self.restart(state.step)
        elif self.started_at is not None and state.step > WARMUP_STEPS and self.is_fit(state.step):
            seconds = (time.perf_counter() - self.started_at - self.excluded) / (state.step - self.window_start)
            self.started_at = None  # until ``restart``: the fit itself is not a step
            return seconds
        return None

    def restart(self, step: int) -> None:
        """Start timing a window at ``step`` (after a fit)."""
        self.started_at, self.window_start, self.excluded = time.perf_counter(), step, 0.0

    def exclude(self, seconds: float) -> None:
        """Leave ``seconds`` spent outside the steps out of the current window."""
        self.excluded += seconds

    def final(self, state: TrainState) -> bool:
        """Whether no fit comes after this one (the next would fall in the decay)."""
        step, last = state.step + 1, decay_start(state.config.optim, state.config.train.max_steps)
        while step <= last and not self.is_fit(step):
            step += 1
        return step > last


def fit_schedule(
    state: TrainState, probe: BudgetProbe, step_seconds: float, seconds_spent: float, val_windows, device: torch.device
) -> int:
    """The schedule's length that fits what is left of the budget, ``seconds_spent`` into it, at ``step_seconds`` per
    step (at most ``probe.cap``); rank 0's measurement decides for all. The cost of an evaluation is measured
    during the learning-rate warm-up, then kept in ``probe.eval_seconds``."""
    if probe.eval_seconds is None or state.step <= probe.refit_step:
        probe.eval_seconds = evaluation_seconds(state, val_windows, device)
    left = SAFETY * state.config.train.time_budget_minutes * 60 - seconds_spent
    steps = schedule_steps(state, step_seconds, probe.eval_seconds, left, cap=probe.cap)
    return distributed.broadcast_object(steps, state.info)


def fit_message(train_config: TrainConfig, step_seconds: float, eval_seconds: float, final: bool) -> str:
    """The line a run prints for its first fit and its last (``final``) to ``train_config.max_steps`` steps."""
    return (
        f"time budget {train_config.time_budget_minutes:g} min: {step_seconds * 1000:.0f} ms per step, about "
        f"{eval_seconds:.0f} s per evaluation; the schedule ends at step {train_config.max_steps:,}"
        + ("" if final else " (fitted again as the run goes)")
    )


def schedule_steps(state: TrainState, step_seconds: float, eval_seconds: float, seconds_left: float, cap: int) -> int:
    """The most steps (at most ``cap``) whose remaining training and evaluations fit in ``seconds_left`` (what is
    left of the budget's ``SAFETY`` fraction).

    Evaluations come every ``train.eval_every`` steps and once at the end, so their number grows with the
    schedule; the cost is monotone in the length, so the longest that fits is found by bisection. A schedule
    whose decay would start before the steps already run is never chosen: their learning rates stay valid.
    """
    every, done, optim = state.config.train.eval_every, state.step, state.config.optim

    def fits(steps: int) -> bool:
        evaluations = ((steps - 1) // every - done // every if every else 0) + 1  # those still to come
        return (steps - done) * step_seconds + evaluations * eval_seconds <= seconds_left

    low = _shortest_valid(optim, done)
    high = max(cap, low)
    if fits(high):
        return high
    if not fits(low):
        return low
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def _shortest_valid(optim, done: int) -> int:
    """The shortest schedule longer than ``done`` steps whose learning rate up to ``done`` does not change (any,
    where none can: a cosine fitted after its warmup, as the first fit of a short warmup is)."""
    steps = done + 1
    if optim.decay_fraction >= 1 and done > optim.warmup_steps:
        return steps
    while decay_start(optim, steps) < done:  # a few hundred steps at most, once per fit
        steps += 1
    return steps


@torch.no_grad()
def evaluation_seconds(state: TrainState, val_windows, device: torch.device) -> float:
    """What one in-training evaluation should take: its forward passes, timed once each in eval mode."""
    tc, model = state.config.train, state.model
    seq_len = state.config.model.seq_len
    model.eval()
    try:
        batch = val_windows.spread_windows(min(32, tc.eval_windows)).to(device)
        generator = torch.Generator(device=device).manual_seed(0)
        start = time.perf_counter()
        state.objective.nll(model, batch, generator=generator, num_t=1)
        per_batch = time.perf_counter() - start
        calls = math.ceil(tc.eval_windows / 32) * (1 if state.objective.exact else tc.eval_num_t)
        seconds = calls * per_batch
        if tc.preview_samples > 0:
            small = batch[: tc.preview_samples]
            start = time.perf_counter()
            state.objective.nll(model, small, generator=generator, num_t=1)
            preview_calls = seq_len if state.objective.exact else min(state.config.sampling.steps, 128) + 1
            seconds += preview_calls * (time.perf_counter() - start)
    finally:
        model.train()
    return seconds
