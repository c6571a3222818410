"""The likelihood bound against brute-force quadrature and the identity it must satisfy with the exact score."""

import math

import pytest
import torch
from reference import all_sequences, diffusion_integral, random_data

from scorediff import (
    AbsorbingGraph,
    ExactScore,
    GeometricSchedule,
    LogLinearSchedule,
    UniformGraph,
    bits_per_token,
    elbo,
    perplexity,
)

SETUPS = {
    "absorbing-loglinear": (AbsorbingGraph(3), LogLinearSchedule()),
    "uniform-geometric": (UniformGraph(3), GeometricSchedule()),
    "uniform-loglinear": (UniformGraph(3), LogLinearSchedule()),
}


def noise_range(schedule):
    ends = schedule.total(torch.tensor([0.0, 1.0], dtype=torch.float64))
    return float(ends[0]), float(ends[1])


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_elbo_matches_quadrature_within_monte_carlo_error(setup):
    graph, schedule = SETUPS[setup]
    data = random_data(3, 3, seed=0)
    exact = ExactScore(graph, data)
    _, hi = noise_range(schedule)
    lo = 0.0  # the bound integrates from clean data, whatever sigma_bar(0) is
    generator = torch.Generator().manual_seed(0)
    for x_0 in (torch.tensor([0, 1, 2]), torch.tensor([2, 2, 0])):
        expected = diffusion_integral(graph, exact, x_0, lo, hi) + float(graph.prior_kl(x_0, hi).sum())
        estimates = elbo(exact, graph, schedule, x_0.expand(4000, 3), num_t=16, generator=generator)
        assert estimates.dtype == torch.float64 and estimates.shape == (4000,)
        standard_error = float(estimates.std()) / math.sqrt(4000)
        assert abs(float(estimates.mean()) - expected) < 4 * standard_error, (float(estimates.mean()), expected)
        assert standard_error < 0.1  # the stratified estimator is precise enough to be a real check


def product_base(graph, sigma_bar_1, seq_len):
    """The base distribution of the prior term over whole sequences."""
    if graph.mask_id is None:
        per_position = graph.limit_distribution()
    else:  # what the forward process makes of a uniformly drawn token (AbsorbingGraph.prior_kl)
        per_position = graph.transition(torch.arange(graph.num_tokens), sigma_bar_1).mean(0)
    states = all_sequences(graph.vocab_size, seq_len)
    return per_position[states].prod(-1)


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_expected_bound_is_entropy_plus_prior_mismatch(setup):
    """With the exact score, E_{x_0 ~ p_0}[bound(x_0)] = H(p_0) + KL(p_1 || p_base) (path-space KL chain rule).

    So the bound is above -log p(x_0) on average, by exactly the mismatch between the true marginal
    at t = 1 and the base the reverse process starts from.
    """
    graph, schedule = SETUPS[setup]
    data = random_data(3, 3, seed=4)
    exact = ExactScore(graph, data)
    _, hi = noise_range(schedule)
    lo = 0.0  # the bound integrates from clean data, whatever sigma_bar(0) is
    clean = all_sequences(3, 3)
    bounds = torch.tensor(
        [diffusion_integral(graph, exact, x_0, lo, hi) + float(graph.prior_kl(x_0, hi).sum()) for x_0 in clean],
        dtype=torch.float64,
    )
    probs = data.reshape(-1)
    expected_bound = float((probs * bounds).sum())
    entropy = float(-(probs * probs.log()).sum())
    p_1 = exact.marginal(hi).reshape(-1)
    base = product_base(graph, hi, 3)
    prior_mismatch = float((p_1 * (p_1.log() - base.log())).sum())
    assert math.isclose(expected_bound, entropy + prior_mismatch, rel_tol=1e-6, abs_tol=1e-6)
    assert expected_bound >= entropy - 1e-9


def test_units():
    nats = torch.tensor([10.0, 14.0])  # 12 nats per sequence of 6 tokens on average
    assert math.isclose(bits_per_token(nats, 6), 2.0 / math.log(2))
    assert math.isclose(perplexity(nats, 6), math.exp(2.0))


def test_elbo_rejects_bad_input():
    graph, schedule = SETUPS["absorbing-loglinear"]
    exact = ExactScore(graph, random_data(3, 3))
    with pytest.raises(ValueError, match="num_t must be >= 1; got 0"):
        elbo(exact, graph, schedule, torch.zeros(2, 3, dtype=torch.int64), num_t=0)
    with pytest.raises(ValueError, match=r"x_0 must be in \[0, 4\); got values in \[0, 9\]"):
        elbo(exact, graph, schedule, torch.tensor([[0, 9, 1]]))
