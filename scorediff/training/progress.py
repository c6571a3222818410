"""What the loop keeps count of between log lines: training loss and throughput, and skipped steps."""

from __future__ import annotations

import time

from .optim import lr_at
from .step import StepOutput, TrainingDiverged, TrainState


class Skips:
    """Counts steps skipped for a non-finite loss or gradient; too many in a row end the run."""

    def __init__(self, limit: int):
        self.limit, self.total, self.in_a_row, self.first = limit, 0, 0, None

    def count(self, output: StepOutput, state: TrainState) -> None:
        if not output.skipped:
            self.in_a_row, self.first = 0, None
            return
        self.total += 1
        self.in_a_row += 1
        self.first = self.first or state.step
        if self.in_a_row >= self.limit:
            raise TrainingDiverged(
                f"training stopped at step {state.step}: the loss or gradient was not finite at {self.in_a_row} "
                f"steps in a row (from step {self.first}); lower optim.lr (now {state.config.optim.lr:g}) "
                f"or check the data"
            )


class Window:
    """Training loss and throughput over the steps since the last log line (skipped steps count for the
    throughput, not for the loss)."""

    def __init__(self):
        self.loss, self.count, self.steps, self.start = 0.0, 0, 0, time.perf_counter()
        self.train_loss, self.tokens_per_second = float("nan"), 0.0

    def add(self, loss: float | None) -> None:
        """One step; ``loss`` None for a skipped one."""
        self.steps += 1
        if loss is not None:
            self.loss += loss
            self.count += 1

    def restart(self) -> None:
        """Leave evaluations and checkpoint writes out of the throughput."""
        self.start = time.perf_counter()

    def record(self, state: TrainState, grad_norm, elapsed: float) -> dict:
        now = time.perf_counter()
        tokens = self.steps * state.config.train.batch_size * state.config.model.seq_len
        self.tokens_per_second = tokens / max(now - self.start, 1e-9)
        self.train_loss = self.loss / self.count if self.count else float("nan")
        self.loss, self.count, self.steps, self.start = 0.0, 0, 0, now
        norm = float(grad_norm)
        return {
            "step": state.step,
            "loss_nats_per_token": self.train_loss if self.train_loss == self.train_loss else None,
            "lr": lr_at(state.step - 1, state.config),
            "grad_norm": norm if norm == norm and abs(norm) != float("inf") else None,
            "tokens_per_second": self.tokens_per_second,
            "elapsed_seconds": elapsed,
            "tokens_seen": state.tokens_seen,
        }
