"""When the training loop stops: its stop rules, owned here alone.

- **The step limit**: ``train.max_steps`` (which a time budget may refit), or ``until_step`` when sooner.
- **The clock**: ``budget.stop_seconds`` of the loop: ``train.max_minutes``, or the time budget's hard stop.
- **Preemption**: SIGTERM or SIGINT (``StopSignals``) ends the run after its step, saved, without an evaluation.
- **The NaN guard**: ``train.max_skipped_steps`` non-finite steps in a row end it with ``TrainingDiverged``
  (weights that are no longer finite are never saved: ``rundir.save``).

Every rank takes the same decision: the clock and the signals are or-ed over the ranks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import TrainConfig
from . import distributed
from .budget import stop_seconds
from .distributed import DistInfo
from .progress import Skips
from .signals import StopSignals
from .step import StepOutput, TrainState


@dataclass(frozen=True)
class Stop:
    """The verdict after a step."""

    now: bool
    """Stop after this step (and save it)."""
    signal: str | None = None
    """``"SIGTERM"`` or ``"SIGINT"`` when a signal asked for the stop: then nothing is evaluated."""


class StopRules:
    """The loop's stop rules; as a context manager it takes SIGTERM and SIGINT (see ``StopSignals``).

    Args:
        train_config: the run's ``train`` section (its step limit is read again after each fit of the budget).
        until_step: stop after this step too, without changing the schedule (None: no such limit).
        info: this process's rank and the world size.
        device: where the flags are or-ed over the ranks.
    """

    def __init__(self, train_config: TrainConfig, until_step: int | None, info: DistInfo, device: torch.device):
        self.until_step, self.info, self.device = until_step, info, device
        self.seconds = stop_seconds(train_config)
        self.skips = Skips(train_config.max_skipped_steps)
        self.signals = StopSignals()

    def __enter__(self) -> StopRules:
        self.signals.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.signals.__exit__(*exc)

    def last_step(self, train_config: TrainConfig) -> int:
        """The step the loop ends after, for the schedule ``train_config`` holds now."""
        return train_config.max_steps if self.until_step is None else min(train_config.max_steps, self.until_step)

    def guard(self, output: StepOutput, state: TrainState) -> None:
        """The NaN guard: raise ``TrainingDiverged`` at the ``train.max_skipped_steps``-th skipped step in a row."""
        self.skips.count(output, state)

    def after_step(self, state: TrainState, loop_seconds: float) -> Stop:
        """Whether the loop stops after the step it just took, ``loop_seconds`` after it started."""
        late, signalled = distributed.any_rank(
            [loop_seconds > self.seconds, self.signals.received is not None], self.info, self.device
        )
        signal = (self.signals.received or "SIGTERM") if signalled else None  # a peer's signal reads as SIGTERM
        return Stop(state.step == self.last_step(state.config.train) or late or signalled, signal)

    def late(self, loop_seconds: float) -> bool:
        """Whether the clock has run out (on any rank), checked again after an evaluation."""
        return distributed.any_rank([loop_seconds > self.seconds], self.info, self.device)[0]
