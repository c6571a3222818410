import math

import pytest
import torch
from reference import IndependentExactScore, diffusion_integral, random_data

from scorediff import (
    AbsorbingGraph,
    ExactScore,
    GeometricSchedule,
    LogLinearSchedule,
    UniformGraph,
    sample_times,
    score_entropy_loss,
)


def test_antithetic_times_cover_the_interval_evenly():
    t = sample_times(8, generator=torch.Generator().manual_seed(0), t_min=0.0)
    gaps = torch.sort(t).values.diff()
    torch.testing.assert_close(gaps, torch.full((7,), 1 / 8, dtype=torch.float64))
    iid = sample_times(1000, antithetic=False, t_min=0.2, generator=torch.Generator().manual_seed(0))
    assert iid.min() >= 0.2 and iid.max() < 1.0
    assert sample_times(3, dtype=torch.float32).dtype == torch.float32


SETUPS = [(AbsorbingGraph(3), LogLinearSchedule()), (UniformGraph(3), GeometricSchedule())]


@pytest.mark.parametrize("graph, schedule", SETUPS, ids=repr)
def test_loss_is_unbiased_for_the_bound(graph, schedule):
    data = random_data(3, 3, seed=2)
    exact = ExactScore(graph, data)
    x_0 = torch.tensor([[1, 0, 2]]).expand(64, 3)
    generator = torch.Generator().manual_seed(0)
    means = torch.stack([score_entropy_loss(exact, graph, schedule, x_0, generator).mean() for _ in range(300)])
    t_min = 1e-3
    lo, hi = (float(schedule.total(torch.tensor(t, dtype=torch.float64))) for t in (t_min, 1.0))
    expected = diffusion_integral(graph, exact, x_0[0], lo, hi) / (1 - t_min)
    standard_error = float(means.std()) / math.sqrt(means.numel())
    assert abs(float(means.mean()) - expected) < 4 * standard_error


def test_antithetic_times_lower_the_variance_of_the_batch_loss():
    """Uniform graph, geometric schedule: sigma(t) E[DSE] varies a lot with t, and stratifying t pays.

    (With the absorbing graph and the log-linear schedule the integrand is nearly flat in t, the
    variance comes from the draw of x_t, and stratified times gain little; the loss stays unbiased.)
    """
    graph, schedule = UniformGraph(3), GeometricSchedule()
    seq_len = 128  # long sequences, as in real training
    generator = torch.Generator().manual_seed(0)
    probs = torch._standard_gamma(torch.ones(seq_len, 3, dtype=torch.float64), generator)
    probs /= probs.sum(-1, keepdim=True)
    exact = IndependentExactScore(graph, probs)
    x_0 = torch.multinomial(probs, 16, replacement=True, generator=generator).T  # (16, L)
    variance = {}
    for antithetic in (True, False):
        means = [score_entropy_loss(exact, graph, schedule, x_0, generator, antithetic).mean() for _ in range(300)]
        variance[antithetic] = float(torch.stack(means).var())
    assert variance[True] < 0.25 * variance[False], variance


def test_loss_gradient_is_finite_in_float32():
    graph, schedule = AbsorbingGraph(5), LogLinearSchedule()
    logits = torch.zeros(2, 4, 6, requires_grad=True)

    def score_fn(x_t, sigma_bar):
        return logits - logits.gather(-1, x_t[..., None])

    x_0 = torch.randint(0, 5, (2, 4), generator=torch.Generator().manual_seed(0))
    loss = score_entropy_loss(score_fn, graph, schedule, x_0, torch.Generator().manual_seed(1))
    assert loss.shape == (2,) and loss.dtype == torch.float32
    loss.mean().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
