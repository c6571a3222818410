"""A time budget sets the schedule's length from the measured step time, and the run then ends its schedule."""

import dataclasses
import json
import math
from types import SimpleNamespace

from scorediff.checkpoint import read_config
from scorediff.config import OptimConfig, load_config
from scorediff.training import budget, train, trainer
from scorediff.training.budget import (
    FIRST_FIT,
    PROBE_STEPS,
    REFIT_EVERY,
    WARMUP_STEPS,
    BudgetProbe,
    schedule_steps,
)
from scorediff.training.optim import decay_start, lr_at


def fake_state(step, eval_every, optim=None, max_steps=100_000, minutes=1.0):
    train_config = SimpleNamespace(eval_every=eval_every, max_steps=max_steps, time_budget_minutes=minutes)
    return SimpleNamespace(step=step, config=SimpleNamespace(train=train_config, optim=optim or OptimConfig()))


def test_schedule_counts_training_and_every_evaluation():
    # 0.1 s per step, 2 s per evaluation, 97 s left at step 25, an evaluation every 100 steps and at the end:
    # n steps need 0.1 (n - 25) + 2 (n // 100 + 1) <= 97: n = 815 takes 79 + 18 = 97 s, n = 816 97.1 s.
    steps = schedule_steps(fake_state(25, 100), 0.1, 2.0, 97.0, cap=10_000)
    assert steps == 815 and 97 < 0.1 * (816 - 25) + 2.0 * (816 // 100 + 1)
    assert schedule_steps(fake_state(25, 100), 0.1, 2.0, 97.0, cap=500) == 500  # never more than max_steps
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


def test_a_long_warmup_refits_the_schedule_at_its_end(micro_config, monkeypatch):
    # a warm-up of 50 steps: fitted after step 25 and again after step 50, from steps 26..50 (a budget of 24 s on a
    # clock of 0.1 s per step, so the 50 fit whatever the machine's load)
    config, _ = micro_config(max_steps=100_000, time_budget_minutes=0.4, save_every=0, eval_every=0)
    config = dataclasses.replace(config, optim=dataclasses.replace(config.optim, warmup_steps=50))
    assert BudgetProbe.refit_at(50) == 50 and BudgetProbe.refit_at(FIRST_FIT + PROBE_STEPS) == 0
    result = run_on_a_fake_clock(monkeypatch, config, lambda step: 0.1)
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    fits = [r for r in records if "schedule_steps" in r]
    assert [r["step"] for r in fits] == [FIRST_FIT, 50]
    fitted = fits[-1]["schedule_steps"]
    assert result.step == fitted == read_config(result.run_dir)[1]["train"]["max_steps"]
    # the steps before the refit ran the warm-up, which is the same whatever the schedule's length
    fitted_config = dataclasses.replace(config, train=dataclasses.replace(config.train, max_steps=fitted))
    lrs = {r["step"]: r["lr"] for r in records if "lr" in r}
    assert all(lrs[step] == lr_at(step - 1, fitted_config) for step in lrs)


def test_a_late_fit_counts_only_the_evaluations_to_come():
    # at step 1,050, 0.125 s per step, an evaluation every 100 steps and at the end, 2 s each: n steps cost
    # 0.125 (n - 1050) + 2 ((n - 1) // 100 - 10 + 1); n = 1,700 takes 81.25 + 14 = 95.25 s <= 97, n = 1,701
    # 81.375 + 16 = 97.375 s (its evaluation at 1,700 comes before the end). The ten evaluations already run at
    # steps 100..1,000 are in the time spent, not in the time left.
    wsd = OptimConfig(warmup_steps=100, decay_fraction=0.2)
    assert schedule_steps(fake_state(1050, 100, wsd), 0.125, 2.0, 97.0, cap=10_000) == 1700


def test_a_late_fit_never_moves_the_decay_into_the_steps_already_run():
    # warmup-stable-decay over the last 30%: at step 1,500 with no time left the shortest schedule whose decay
    # starts at 1,500 or later is chosen (n - round(0.3 (n - 100)) >= 1500: n = 2,100), not one that ends now
    wsd = OptimConfig(warmup_steps=100, decay_fraction=0.3)
    steps = schedule_steps(fake_state(1500, 0, wsd), 0.1, 2.0, 0.0, cap=10_000)
    assert steps == 2100 and decay_start(wsd, 2100) == 1500 and decay_start(wsd, 2099) < 1500
    # with time left it is the longest that fits, as ever: 0.125 (n - 1500) + 2 <= 97 at n = 2,260
    assert schedule_steps(fake_state(1500, 0, wsd), 0.125, 2.0, 97.0, cap=10_000) == 2260


def test_a_warmup_stable_decay_run_is_refitted_until_its_decay(micro_config, monkeypatch):
    # 0.1 s per step on a fake clock (a busy machine once ran too few steps in 24 s of real time for 3 fits)
    config, _ = micro_config(max_steps=100_000, time_budget_minutes=0.4, save_every=0, eval_every=0)
    config = dataclasses.replace(config, optim=dataclasses.replace(config.optim, warmup_steps=50, decay_fraction=0.2))
    result = run_on_a_fake_clock(monkeypatch, config, lambda step: 0.1)
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    fits = [r for r in records if "schedule_steps" in r]
    fitted = fits[-1]["schedule_steps"]
    assert result.step == fitted == read_config(result.run_dir)[1]["train"]["max_steps"]
    fitted_config = dataclasses.replace(config, train=dataclasses.replace(config.train, max_steps=fitted))
    last_decay = decay_start(fitted_config.optim, fitted)
    # fitted at 25, at the warmup's end, then every REFIT_EVERY steps up to the decay of the last fit
    expected = [FIRST_FIT, 50] + list(range(50 + REFIT_EVERY, last_decay + 1, REFIT_EVERY))
    assert len(expected) >= 3 and [r["step"] for r in fits] == expected
    # no fit changed the learning rate of a step already taken: the whole run followed the last fit's schedule
    lrs = {r["step"]: r["lr"] for r in records if "lr" in r}
    assert all(math.isclose(lrs[step], lr_at(step - 1, fitted_config), rel_tol=1e-12) for step in lrs)


def test_the_probe_times_the_steps_of_each_window(monkeypatch):
    # a clock that runs 0.1 s per step up to the first fit, then 0.05 s per step; the fit itself takes 10 s and an
    # evaluation after step 40 takes 7 s, which the loop excludes
    clock = {"now": 0.0}
    monkeypatch.setattr(budget.time, "perf_counter", lambda: clock["now"])
    probe = BudgetProbe(start_step=0, refit_step=60)
    state = fake_state(0, 0, OptimConfig(warmup_steps=60), max_steps=1_000)
    measured = {}
    for step in range(1, 70):
        clock["now"] += 0.1 if step <= FIRST_FIT else 0.05
        state.step = step
        assert probe.wants(state) == (step <= 60)
        value = probe.after_step(state) if probe.wants(state) else None
        if value is not None:
            measured[step] = value
            clock["now"] += 10.0  # the fit
            probe.restart(step)
        if step == 40:
            clock["now"] += 7.0
            probe.exclude(7.0)
    assert sorted(measured) == [FIRST_FIT, 60]
    assert math.isclose(measured[FIRST_FIT], 0.1) and math.isclose(measured[60], 0.05)


def train_times(max_minutes=0.0, time_budget_minutes=0.0):
    return SimpleNamespace(max_minutes=max_minutes, time_budget_minutes=time_budget_minutes)


def test_the_hard_stop_follows_the_budget_unless_set():
    assert budget.stop_seconds(train_times(time_budget_minutes=15)) == 900 + 63  # raised budget, raised stop
    assert budget.stop_seconds(train_times(time_budget_minutes=1)) == 60 + 30  # the least margin
    assert budget.stop_seconds(train_times(max_minutes=9.6, time_budget_minutes=9)) == 9.6 * 60  # set: the earlier
    assert budget.stop_seconds(train_times(max_minutes=30, time_budget_minutes=9)) == 540 + 37.8
    assert budget.stop_seconds(train_times(max_minutes=2)) == 120
    assert budget.stop_seconds(train_times()) == math.inf


def test_a_stop_before_the_budget_is_spent_is_warned_of():
    warning = budget.unfinished_schedule_warning(train_times(max_minutes=9.6, time_budget_minutes=15))
    assert "\n" not in warning and "max_minutes=9.6" in warning and "time_budget_minutes=15" in warning
    assert "will not finish" in warning
    for agreeing in (train_times(9.6, 9), train_times(9, 9), train_times(0, 15), train_times(5, 0)):
        assert budget.unfinished_schedule_warning(agreeing) is None


def run_on_a_fake_clock(monkeypatch, config, seconds_per_step):
    """Train ``config`` on a clock that moves only in steps: ``seconds_per_step(step)`` for each (evaluations and
    checkpoints take no time)."""
    clock = SimpleNamespace(now=0.0)
    fake_time = SimpleNamespace(perf_counter=lambda: clock.now)
    monkeypatch.setattr(trainer, "time", fake_time)
    monkeypatch.setattr(budget, "time", fake_time)
    real_step = trainer.train_step

    def timed_step(state, batch):
        clock.now += seconds_per_step(state.step + 1)
        return real_step(state, batch)

    monkeypatch.setattr(trainer, "train_step", timed_step)
    return train(config, progress=False)


def preset_times(config, preset="tiny", **overrides):
    """``config`` with the time options of ``preset``, then ``overrides``."""
    times = {name: getattr(load_config(preset).train, name) for name in ("max_minutes", "time_budget_minutes")}
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **{**times, **overrides}))


def test_a_raised_budget_ends_its_schedule(micro_config, monkeypatch):
    # 10 s per step and a budget raised to 15 minutes: fitted at step 25 (250 s in) to the steps that fit in
    # 0.97 * 900 - 250 = 623 s, 87; they end at 870 s, past the presets' old hard stop of 9.6 minutes (576 s)
    config, _ = micro_config(max_steps=100_000, save_every=0, eval_every=0)
    config = preset_times(config, time_budget_minutes=15.0)
    result = run_on_a_fake_clock(monkeypatch, config, lambda step: 10.0)
    assert read_config(result.run_dir)[1]["train"]["max_steps"] == 87 == result.step
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    fitted = dataclasses.replace(config, train=dataclasses.replace(config.train, max_steps=87))
    lrs = [r["lr"] for r in records if "lr" in r]
    assert lrs[-1] == lr_at(86, fitted) < 0.11 * config.optim.lr  # decayed to its floor, not held at the peak


def test_a_budgeted_run_stops_at_its_own_hard_stop(micro_config, monkeypatch):
    # fitted to 87 steps at 10 s each as above, then the machine slows to 20 s per step: the stop 7% past 15
    # minutes (963 s) comes after step 61 (250 + 36 x 20 = 970 s), and the run saves there
    config, _ = micro_config(max_steps=100_000, save_every=0, eval_every=0)
    config = preset_times(config, time_budget_minutes=15.0)
    result = run_on_a_fake_clock(monkeypatch, config, lambda step: 10.0 if step <= FIRST_FIT else 20.0)
    assert result.step == 61 and result.checkpoint.name.endswith("61")


def test_the_run_says_when_its_schedule_will_not_finish(micro_config, capsys):
    config, _ = micro_config(max_steps=2, save_every=0, time_budget_minutes=15.0, max_minutes=9.6)
    train(config, progress=False)
    printed = [line for line in capsys.readouterr().out.splitlines() if "will not finish" in line]
    assert len(printed) == 1 and printed[0].startswith("warning: train.max_minutes=9.6")
