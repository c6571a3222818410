"""Samplers with the exact score reproduce the data distribution; conditioning reproduces the conditional."""

import pytest
import torch
from reference import flat_index, random_data, total_variation

from scorediff import (
    PREDICTORS,
    AbsorbingGraph,
    ExactScore,
    GeometricSchedule,
    LogLinearSchedule,
    SampleTrajectory,
    UniformGraph,
    sample,
)

SETUPS = {
    "absorbing-loglinear": (AbsorbingGraph(3), LogLinearSchedule()),
    "uniform-geometric": (UniformGraph(3), GeometricSchedule()),
    "uniform-loglinear": (UniformGraph(3), LogLinearSchedule()),
}
NUM_SAMPLES = 80_000


@pytest.mark.parametrize("predictor", sorted(PREDICTORS))
@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_sample_reproduces_the_data_distribution(setup, predictor):
    graph, schedule = SETUPS[setup]
    data = random_data(3, 3, seed=0)
    generator = torch.Generator().manual_seed(0)
    x = sample(ExactScore(graph, data), graph, schedule, (NUM_SAMPLES, 3), 100, predictor, generator=generator)
    assert x.dtype == torch.int64 and x.shape == (NUM_SAMPLES, 3)
    assert x.min() >= 0 and x.max() < 3  # no mask left, only data tokens
    assert total_variation(x, data, 3) <= 0.02


@pytest.mark.parametrize("predictor", sorted(PREDICTORS))
def test_absorbing_conditional_sampling_is_exact(predictor):
    graph, schedule = SETUPS["absorbing-loglinear"]
    data = random_data(3, 4, seed=3)
    given = torch.tensor([False, True, False, True])  # any positions: here the second and the last
    tokens = torch.tensor([0, 2, 0, 1]).expand(NUM_SAMPLES, 4)
    mask = given.expand(NUM_SAMPLES, 4)
    generator = torch.Generator().manual_seed(1)
    x = sample(
        ExactScore(graph, data),
        graph,
        schedule,
        (NUM_SAMPLES, 4),
        100,
        predictor,
        condition=(tokens, mask),
        generator=generator,
    )
    assert (x[:, given] == tokens[:, given]).all()
    conditional = data[:, 2, :, 1]  # p(x_0, x_2 | x_1 = 2, x_3 = 1)
    conditional = conditional / conditional.sum()
    assert total_variation(x[:, ~given], conditional, 3) <= 0.02


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_given_tokens_never_change_and_are_used_throughout(setup):
    graph, schedule = SETUPS[setup]
    data = random_data(3, 5, seed=5)
    generator = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, 3, (64, 5), generator=generator)
    mask = torch.rand(64, 5, generator=generator) < 0.5
    out = sample(
        ExactScore(graph, data),
        graph,
        schedule,
        (64, 5),
        10,
        condition=(tokens, mask),
        generator=generator,
        return_trajectory=True,
    )
    for state in out.states:
        assert (state[mask] == tokens[mask]).all()


def test_trajectory_of_the_absorbing_sampler():
    graph, schedule = SETUPS["absorbing-loglinear"]
    data = random_data(3, 3, seed=0)
    steps = 12
    out = sample(
        ExactScore(graph, data),
        graph,
        schedule,
        (500, 3),
        steps,
        return_trajectory=True,
        generator=torch.Generator().manual_seed(0),
    )
    assert isinstance(out, SampleTrajectory)
    assert len(out.states) == steps + 2 and len(out.times) == steps + 2
    assert out.times[0] == 1.0 and out.times[-1] == 0.0 and out.times == sorted(out.times, reverse=True)
    assert (out.states[0] == graph.mask_id).all()
    assert (out.states[-1] != graph.mask_id).all() and torch.equal(out.states[-1], out.tokens)
    masked = [float((s == graph.mask_id).double().mean()) for s in out.states]
    assert masked == sorted(masked, reverse=True)  # tokens are revealed, never masked again
    for before, after in zip(out.states[:-1], out.states[1:], strict=True):
        revealed = before != graph.mask_id
        assert torch.equal(after[revealed], before[revealed])


def test_seeded_runs_repeat_and_without_denoise_masks_can_remain():
    graph, schedule = SETUPS["absorbing-loglinear"]
    exact = ExactScore(graph, random_data(3, 3, seed=0))
    first = sample(exact, graph, schedule, (100, 3), 5, generator=torch.Generator().manual_seed(7))
    again = sample(exact, graph, schedule, (100, 3), 5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, again)
    raw = sample(exact, graph, schedule, (2000, 3), 2, denoise=False, generator=torch.Generator().manual_seed(7))
    assert (raw == graph.mask_id).any()


def test_bad_arguments_say_what_was_expected():
    graph, schedule = SETUPS["absorbing-loglinear"]
    exact = ExactScore(graph, random_data(3, 3, seed=0))
    with pytest.raises(ValueError, match=r"steps must be a whole number >= 1; got 0"):
        sample(exact, graph, schedule, (2, 3), 0)
    with pytest.raises(ValueError, match=r"shape must be \(batch_size, seq_len\)"):
        sample(exact, graph, schedule, (2, 0), 4)
    with pytest.raises(ValueError, match=r"unknown predictor 'heun'; expected one of \['analytic', 'euler'\]"):
        sample(exact, graph, schedule, (2, 3), 4, predictor="heun")
    tokens = torch.zeros(2, 3, dtype=torch.int64)
    with pytest.raises(ValueError, match="condition mask must be a bool tensor"):
        sample(exact, graph, schedule, (2, 3), 4, condition=(tokens, torch.ones(2, 3)))
    with pytest.raises(ValueError, match=r"must both have shape \(2, 3\); got \(2, 3\) and \(2, 2\)"):
        sample(exact, graph, schedule, (2, 3), 4, condition=(tokens, torch.ones(2, 2, dtype=torch.bool)))
    with pytest.raises(
        ValueError, match=r"conditioning tokens must be data tokens in \[0, 3\); got values in \[3, 3\]"
    ):
        sample(exact, graph, schedule, (2, 3), 4, condition=(tokens + 3, torch.ones(2, 3, dtype=torch.bool)))


def test_flat_index_helper():
    assert flat_index(torch.tensor([[1, 0, 2]]), 3).item() == 11
