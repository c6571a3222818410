"""A time budget sets the schedule's length from the measured step time, and the run then ends its schedule."""

import dataclasses
import json
import math
from types import SimpleNamespace

from scorediff.checkpoint import read_config
from scorediff.training import budget, train
from scorediff.training.budget import FIRST_FIT, PROBE_STEPS, SAFETY, WARMUP_STEPS, BudgetProbe, schedule_steps
from scorediff.training.optim import lr_at


def fake_state(step, eval_every):
    train_config = SimpleNamespace(eval_every=eval_every)
    return SimpleNamespace(step=step, config=SimpleNamespace(train=train_config))


def test_schedule_counts_training_and_every_evaluation():
    # 0.1 s per step, 2 s per evaluation, 100 s left at step 25, an evaluation every 100 steps and at the end:
    # n steps need 0.1 (n - 25) + 2 (n // 100 + 1) <= 0.97 * 100: n = 815 takes 79 + 18 = 97 s, n = 816 97.1 s.
    steps = schedule_steps(fake_state(25, 100), 0.1, 2.0, 100.0, cap=10_000)
    assert steps == 815 and SAFETY * 100 < 0.1 * (816 - 25) + 2.0 * (816 // 100 + 1)
    assert schedule_steps(fake_state(25, 100), 0.1, 2.0, 100.0, cap=500) == 500  # never more than max_steps
    assert schedule_steps(fake_state(25, 0), 0.1, 2.0, 1.0, cap=500) == 26  # out of time: stop after this step


def test_a_budgeted_run_ends_its_schedule(micro_config):
    config, _ = micro_config(max_steps=100_000, time_budget_minutes=0.08, save_every=0, eval_every=0)
    result = train(config, progress=False)
    fitted = read_config(result.checkpoint)[1]["train"]["max_steps"]
    assert WARMUP_STEPS + PROBE_STEPS < fitted < 100_000
    assert result.step == fitted  # the whole schedule ran, not cut by a clock
    assert read_config(result.run_dir)[1]["train"]["max_steps"] == fitted  # the run's config records it
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    probe = [r for r in records if "schedule_steps" in r]
    assert len(probe) == 1 and probe[0]["step"] == WARMUP_STEPS + PROBE_STEPS
    fitted_config = dataclasses.replace(config, train=dataclasses.replace(config.train, max_steps=fitted))
    last_lr = [r["lr"] for r in records if "lr" in r][-1]
    assert last_lr == lr_at(fitted - 1, fitted_config)  # the schedule's own last step: at its floor
    # at the floor but for the cosine's last step, (1 - r)(1 - cos(pi / n)) / 2 of the peak over n decay steps
    ratio, decay_steps = config.optim.min_lr_ratio, fitted - config.optim.warmup_steps
    above_floor = (1 - ratio) * (1 - math.cos(math.pi / decay_steps)) / 2 * config.optim.lr
    assert 0 <= last_lr - config.optim.lr * ratio <= above_floor + 1e-12


def test_a_long_warmup_refits_the_schedule_at_its_end(micro_config):
    # a warm-up of 50 steps: fitted after step 25 and again after step 50, from steps 27..50
    config, _ = micro_config(max_steps=100_000, time_budget_minutes=0.2, save_every=0, eval_every=0)
    config = dataclasses.replace(config, optim=dataclasses.replace(config.optim, warmup_steps=50))
    assert BudgetProbe.refit_at(50) == 50 and BudgetProbe.refit_at(FIRST_FIT + PROBE_STEPS) == 0
    result = train(config, progress=False)
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    fits = [r for r in records if "schedule_steps" in r]
    assert [r["step"] for r in fits] == [FIRST_FIT, 50]
    fitted = fits[-1]["schedule_steps"]
    assert result.step == fitted == read_config(result.run_dir)[1]["train"]["max_steps"]
    # the steps before the refit ran the warm-up, which is the same whatever the schedule's length
    fitted_config = dataclasses.replace(config, train=dataclasses.replace(config.train, max_steps=fitted))
    lrs = {r["step"]: r["lr"] for r in records if "lr" in r}
    assert all(lrs[step] == lr_at(step - 1, fitted_config) for step in lrs)


def test_the_probe_times_the_steps_of_each_window(monkeypatch):
    # a clock that runs 0.1 s per step up to the first fit, then 10 s for the fit itself, then 0.05 s per step
    clock = {"now": 0.0}
    monkeypatch.setattr(budget.time, "perf_counter", lambda: clock["now"])
    probe = BudgetProbe(start_step=0, refit_step=60)
    state = SimpleNamespace(step=0, config=SimpleNamespace(train=SimpleNamespace(time_budget_minutes=1.0)))
    measured = {}
    for step in range(1, 70):
        clock["now"] += 0.1 if step <= FIRST_FIT else 0.05
        clock["now"] += 10.0 if step == FIRST_FIT + 1 else 0.0  # the fit ran between steps 25 and 26
        state.step = step
        assert probe.wants(state) == (step <= 60)
        value = probe.after_step(state) if probe.wants(state) else None
        if value is not None:
            measured[step] = value
    assert sorted(measured) == [FIRST_FIT, 60]
    assert math.isclose(measured[FIRST_FIT], 0.1) and math.isclose(measured[60], 0.05)
