"""The learning-rate schedule: linear warmup, the peak held (warmup-stable-decay), then a cosine to the floor."""

import math
from types import SimpleNamespace

import pytest

from scorediff.config import OptimConfig
from scorediff.training.optim import decay_start, lr_at


def config(max_steps, **optim):
    return SimpleNamespace(optim=OptimConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1, **optim),
                           train=SimpleNamespace(max_steps=max_steps))  # fmt: skip


def cosine(step, total, warmup=10, start=None, floor=0.1):
    """The closed form: 1 up to ``start``, then floor + (1 - floor)(1 + cos(pi p)) / 2 over the decay."""
    start = warmup if start is None else start
    progress = min(1.0, max(0, step - start) / (total - start))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def test_a_whole_decay_is_the_cosine_from_the_end_of_the_warmup():
    c = config(110)
    assert decay_start(c.optim, 110) == 10
    assert [lr_at(s, c) for s in range(10)] == pytest.approx([(s + 1) / 10 for s in range(10)], abs=1e-15)
    assert all(lr_at(s, c) == pytest.approx(cosine(s, 110), abs=1e-15) for s in range(10, 111))


def test_warmup_stable_decay_holds_the_peak_then_decays_over_its_fraction():
    c = config(110, decay_fraction=0.3)  # 100 steps after the warmup: the last 30 decay
    assert decay_start(c.optim, 110) == 80
    assert all(lr_at(s, c) == 1.0 for s in range(10, 81))
    assert all(lr_at(s, c) == pytest.approx(cosine(s, 110, start=80), abs=1e-15) for s in range(80, 111))
    assert lr_at(110, c) == pytest.approx(0.1, abs=1e-15)
    # before the decay the learning rate does not depend on the schedule's length
    longer = config(400, decay_fraction=0.3)
    assert [lr_at(s, c) for s in range(81)] == [lr_at(s, longer) for s in range(81)]


def test_decay_fraction_must_be_in_0_1():
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match=r"decay_fraction must be in \(0, 1\]"):
            OptimConfig(decay_fraction=bad)
