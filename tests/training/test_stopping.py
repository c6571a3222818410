"""The loop's stop rules, each on its own: step limit, clock, signal and NaN guard."""

import os
import signal
from types import SimpleNamespace

import pytest
import torch

from scorediff.training.distributed import DistInfo
from scorediff.training.step import StepOutput, TrainingDiverged
from scorediff.training.stopping import StopRules


def rules(until_step=None, max_minutes=0.0, budget=0.0, max_skipped_steps=2):
    train = SimpleNamespace(max_steps=10, max_minutes=max_minutes, time_budget_minutes=budget,
                            max_skipped_steps=max_skipped_steps)  # fmt: skip
    return StopRules(train, until_step, DistInfo(), torch.device("cpu")), train


def state_at(step, train):
    return SimpleNamespace(step=step, config=SimpleNamespace(train=train, optim=SimpleNamespace(lr=1e-3)))


def test_the_step_limit_is_the_schedule_or_until_step_when_sooner():
    stop_rules, train = rules(until_step=4)
    assert stop_rules.last_step(train) == 4 and rules(until_step=40)[0].last_step(train) == 10
    assert [stop_rules.after_step(state_at(step, train), 0.0).now for step in (3, 4)] == [False, True]
    assert stop_rules.after_step(state_at(4, train), 0.0).signal is None


def test_the_clock_stops_at_max_minutes_or_past_the_budget():
    by_minutes, train = rules(max_minutes=1.0)
    assert [by_minutes.after_step(state_at(1, train), seconds).now for seconds in (60.0, 60.1)] == [False, True]
    assert by_minutes.late(60.1) and not by_minutes.late(59.9)
    by_budget, _ = rules(budget=1.0)  # 60 s and the least margin, 30 s
    assert not by_budget.late(89.9) and by_budget.late(90.1)
    assert not rules()[0].late(1e12)  # neither set: no clock


def test_a_signal_stops_after_the_step_and_names_itself():
    stop_rules, train = rules()
    with stop_rules:
        os.kill(os.getpid(), signal.SIGINT)  # recorded, not raised as KeyboardInterrupt
        stop = stop_rules.after_step(state_at(2, train), 0.0)
    assert stop.now and stop.signal == "SIGINT"


def test_the_nan_guard_ends_the_run_at_the_limit_in_a_row():
    stop_rules, train = rules(max_skipped_steps=2)
    finite = StepOutput(torch.tensor(1.0), torch.tensor(1.0))
    skipped = StepOutput(torch.tensor(float("nan")), torch.tensor(float("nan")), skipped=True)
    stop_rules.guard(skipped, state_at(1, train))
    stop_rules.guard(finite, state_at(2, train))  # the count restarts
    stop_rules.guard(skipped, state_at(3, train))
    with pytest.raises(TrainingDiverged, match=r"at step 4: .* not finite at 2 steps in a row \(from step 3\)"):
        stop_rules.guard(skipped, state_at(4, train))
    assert stop_rules.skips.total == 3
