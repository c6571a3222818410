"""A time budget sets the schedule's length from the measured step time, and the run then ends its schedule."""

import dataclasses
import json
import math
from types import SimpleNamespace

from scorediff.checkpoint import read_config
from scorediff.training import train
from scorediff.training.budget import PROBE_STEPS, SAFETY, WARMUP_STEPS, schedule_steps
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
