"""Fit the learning-rate schedule to a time budget, so a slow machine still ends its schedule in time.

A run with ``train.time_budget_minutes > 0`` measures its own step time over a few steps after a warm-up
(in which ``torch.compile`` does its work), estimates what each evaluation will cost from two timed forward
passes, and sets ``train.max_steps`` to the steps that fit in what is left of the budget, never more than
the configured ``max_steps``. The first steps after compilation run slower than the rest (10% on 2 cores
of an EPYC: 387 ms against 346), so where the learning-rate warm-up is long enough the fit is made again at
its end, from the steps since the first fit: up to there the learning rate does not depend on the schedule's
length, so the steps already run are those of the refitted schedule. The result is written into the run's
config (and so into every checkpoint), so a run resumed after the last fit continues the same schedule.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from .step import TrainState

WARMUP_STEPS = 5
"""Steps left out of the measurement: compilation, first-touch allocations."""
PROBE_STEPS = 20
"""Steps timed after the warm-up."""
FIRST_FIT = WARMUP_STEPS + PROBE_STEPS
"""The step after which the schedule is first fitted."""
SAFETY = 0.97
"""Fraction of the remaining time the schedule may fill (timing noise, checkpoint writes)."""


@dataclass
class BudgetProbe:
    """Times steps ``WARMUP_STEPS + 1 .. WARMUP_STEPS + PROBE_STEPS`` of a run that starts before them, for a
    first fit, then (with ``refit_step``, the end of the learning-rate warm-up) the steps after the first fit up
    to ``refit_step``, for the second."""

    start_step: int
    refit_step: int = 0
    started_at: float | None = None

    @staticmethod
    def refit_at(warmup_steps: int) -> int:
        """The step of the second fit for a warm-up of ``warmup_steps``: its end, if that leaves ``PROBE_STEPS``
        to time after the first fit (0: no second fit)."""
        return warmup_steps if warmup_steps >= FIRST_FIT + 1 + PROBE_STEPS else 0

    def wants(self, state: TrainState) -> bool:
        minutes = state.config.train.time_budget_minutes
        last = max(FIRST_FIT, self.refit_step)
        return minutes > 0 and self.start_step < WARMUP_STEPS and state.step <= last

    def after_step(self, state: TrainState) -> float | None:
        """Call after every step; returns the measured seconds per step at the end of each window."""
        # the second window starts one step after the first fit, whose evaluation timing is not a step
        if state.step in (WARMUP_STEPS, FIRST_FIT + 1):
            self.started_at = time.perf_counter()
        elif state.step in (FIRST_FIT, self.refit_step) and self.started_at is not None:
            steps = PROBE_STEPS if state.step == FIRST_FIT else self.refit_step - FIRST_FIT - 1
            return (time.perf_counter() - self.started_at) / steps
        return None


def schedule_steps(state: TrainState, step_seconds: float, eval_seconds: float, seconds_left: float, cap: int) -> int:
    """The most steps (at most ``cap``) whose training and evaluations fit in ``seconds_left``.

    Evaluations come every ``train.eval_every`` steps and once at the end, so their number grows with the
    schedule; the cost is monotone in the length, so the longest that fits is found by bisection.
    """
    every, done = state.config.train.eval_every, state.step

    def fits(steps: int) -> bool:
        evaluations = (steps // every if every else 0) + 1
        return (steps - done) * step_seconds + evaluations * eval_seconds <= SAFETY * seconds_left

    low, high = done + 1, max(cap, done + 1)  # at least the step in progress
    if fits(high):
        return high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


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
