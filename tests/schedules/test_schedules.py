import math

import pytest
import torch

from scorediff import SCHEDULES, GeometricSchedule, LogLinearSchedule, get_schedule

# every registered schedule with its defaults (a new one is tested by adding its registry line), and a few settings
ALL = [cls() for cls in SCHEDULES.values()] + [LogLinearSchedule(eps=1e-2), GeometricSchedule(1e-3, 5.0)]


@pytest.mark.parametrize("schedule", ALL, ids=repr)
def test_rate_is_derivative_of_total(schedule):
    t = torch.tensor([0.0, 1e-4, 0.1, 0.37, 0.5, 0.9, 0.999, 1.0], dtype=torch.float64, requires_grad=True)
    (derivative,) = torch.autograd.grad(schedule.total(t).sum(), t)
    torch.testing.assert_close(schedule.rate(t.detach()), derivative, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("schedule", ALL, ids=repr)
def test_total_is_increasing_and_keeps_shape_and_dtype(schedule):
    t = torch.linspace(0, 1, 101, dtype=torch.float32).reshape(101, 1)
    total = schedule.total(t)
    assert total.shape == t.shape and total.dtype == torch.float32
    assert (total.diff(dim=0) > 0).all() and (schedule.rate(t) > 0).all()


def test_endpoints():
    loglinear = LogLinearSchedule(eps=1e-3)
    assert float(loglinear.total(torch.tensor(0.0))) == 0.0
    assert math.isclose(float(loglinear.total(torch.tensor(1.0, dtype=torch.float64))), -math.log(1e-3), rel_tol=1e-12)
    geometric = GeometricSchedule(1e-4, 20.0)
    assert math.isclose(float(geometric.total(torch.tensor(0.0, dtype=torch.float64))), 1e-4, rel_tol=1e-12)
    assert math.isclose(float(geometric.total(torch.tensor(1.0, dtype=torch.float64))), 20.0, rel_tol=1e-12)
    # the masked fraction 1 - exp(-sigma_bar) of the log-linear schedule is linear in t
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    torch.testing.assert_close(-torch.expm1(-loglinear.total(t)), (1 - 1e-3) * t)


def test_registry_and_errors():
    assert sorted(SCHEDULES) == ["geometric", "loglinear"]
    assert get_schedule("geometric", sigma_max=5.0).sigma_max == 5.0
    with pytest.raises(
        ValueError, match=r"unknown noise schedule 'cosine'; expected one of \['geometric', 'loglinear'\]"
    ):
        get_schedule("cosine")
    with pytest.raises(ValueError, match="need 0 < sigma_min < sigma_max"):
        GeometricSchedule(1.0, 0.5)
    with pytest.raises(ValueError, match=r"eps must be in \(0, 1\)"):
        LogLinearSchedule(eps=0.0)
