"""Classifier-free guidance against exact scores of a two-class mixture."""

import torch
from reference import random_data, total_variation

from scorediff import AbsorbingGraph, ExactScore, LogLinearSchedule, UniformGraph, sample
from scorediff.sampling import guide_log_probs, guided

NUM_SAMPLES = 60_000


def two_classes(num_tokens: int = 3, seq_len: int = 3):
    a, b = random_data(num_tokens, seq_len, seed=1), random_data(num_tokens, seq_len, seed=2)
    return a, b, 0.5 * (a + b)


def test_the_limits_of_the_rule_are_exact():
    graph = UniformGraph(3)
    a, _, mixture = two_classes()
    conditional, unconditional = ExactScore(graph, a), ExactScore(graph, mixture)
    x = torch.randint(0, 3, (5, 3), generator=torch.Generator().manual_seed(0))
    sigma = torch.full((5,), 0.7, dtype=torch.float64)
    assert torch.equal(guided(conditional, unconditional, 0.0)(x, sigma), conditional(x, sigma))
    torch.testing.assert_close(guided(conditional, unconditional, -1.0)(x, sigma), unconditional(x, sigma))
    log_p = torch.randn(4, 3, 5, dtype=torch.float64).log_softmax(-1)
    log_p[..., 4] = -torch.inf  # the mask
    mixed = guide_log_probs(log_p, log_p.flip(0), 2.0)
    torch.testing.assert_close(mixed.exp().sum(-1), torch.ones(4, 3, dtype=torch.float64))  # renormalised
    assert bool((mixed[..., 4] == -torch.inf).all())  # the mask stays impossible


def test_weight_zero_samples_the_class_conditional():
    graph, schedule = AbsorbingGraph(3), LogLinearSchedule()
    a, _, mixture = two_classes()
    score = guided(ExactScore(graph, a), ExactScore(graph, mixture), 0.0)
    generator = torch.Generator().manual_seed(0)
    x = sample(score, graph, schedule, (NUM_SAMPLES, 3), 1, "first_hitting", generator=generator)
    reference = torch.multinomial(a.reshape(-1), NUM_SAMPLES, True, generator=generator)
    digits = torch.stack([reference // 9, reference // 3 % 3, reference % 3], -1)
    floor = total_variation(digits, a, 3)  # exact draws from the class itself: about 0.008 at 60,000
    assert total_variation(x, a, 3) <= floor + 0.006
    assert total_variation(x, mixture, 3) > floor + 0.05  # the same test tells the class from the mixture


def test_guidance_moves_samples_towards_the_class():
    """With weight w the samples' posterior p(class a | x) under the true mixture rises with w."""
    graph, schedule = AbsorbingGraph(3), LogLinearSchedule()
    a, b, mixture = two_classes()
    posterior_a = (0.5 * a / mixture).reshape(-1)
    means = []
    for weight in (0.0, 1.0, 3.0):
        score = guided(ExactScore(graph, a), ExactScore(graph, mixture), weight)
        generator = torch.Generator().manual_seed(0)
        x = sample(score, graph, schedule, (20_000, 3), 64, "analytic", generator=generator)
        index = (x * torch.tensor([9, 3, 1])).sum(-1)
        means.append(float(posterior_a[index].mean()))
    # standard error of each mean is under 0.002 (posteriors in [0, 1], 20,000 draws); the steps are far larger
    assert means[0] + 0.02 < means[1] < means[2] - 0.01, means
