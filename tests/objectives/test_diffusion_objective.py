"""The diffusion objective's loss is the score entropy, in whichever form it computes it."""

import pytest
import torch

from scorediff import AbsorbingGraph, LogLinearSchedule, weighted_score_entropy
from scorediff.model import ModelConfig
from scorediff.objectives import DiffusionObjective
from scorediff.sampling.options import SamplingOptions


def test_time_independent_cross_entropy_equals_the_score_entropy():
    graph, schedule = AbsorbingGraph(9), LogLinearSchedule()
    objective = DiffusionObjective(graph, schedule, time_conditioning=False)
    assert objective.cross_entropy
    torch.manual_seed(0)
    config = ModelConfig(hidden_size=32, cond_dim=16, n_blocks=1, n_heads=2, seq_len=12, time_conditioning=False)
    model = objective.build_model(config).eval()
    for parameter in model.parameters():  # out of adaLN-zero's all-zero start
        torch.nn.init.normal_(parameter, std=0.3)
    x_0 = torch.randint(0, 9, (64, 12), generator=torch.Generator().manual_seed(1))
    batch = objective.draw(x_0, torch.Generator().manual_seed(2))
    with torch.no_grad():
        cross_entropy = objective.loss(model, batch)
        score_entropy = weighted_score_entropy(model, graph, schedule, x_0, batch["t"], x_t=batch["x_t"])
    # float32: the score entropy's sum of scores cancels against its constant to rounding
    torch.testing.assert_close(cross_entropy, score_entropy, rtol=2e-5, atol=2e-4)
    masked = (batch["x_t"] == graph.mask_id).any(-1)
    assert (cross_entropy[masked] > 0).all() and (cross_entropy[~masked] == 0).all() and masked.sum() > 32
    # log-linear: the weight sigma(t) / (e^sigma_bar - 1) is 1 / t
    t = batch["t"]
    torch.testing.assert_close(schedule.rate(t) / torch.expm1(schedule.total(t)), 1 / t, rtol=1e-9, atol=0)
    assert not DiffusionObjective(graph, schedule).cross_entropy  # the time-conditioned network keeps the DSE


def test_mask_count_draws_estimate_the_same_loss():
    """Both ways of masking give the same expected loss: the exact value by enumerating every mask of a short
    sequence, sum_M (|M| - 1)! (L - |M|)! / L! sum_{i in M} CE_i(M), against Monte Carlo means of both draws."""
    import itertools
    import math

    graph, schedule, seq_len = AbsorbingGraph(3), LogLinearSchedule(eps=1e-6), 4
    torch.manual_seed(0)
    config = ModelConfig(hidden_size=16, cond_dim=8, n_blocks=1, n_heads=2, seq_len=seq_len, time_conditioning=False)
    bernoulli = DiffusionObjective(graph, schedule, time_conditioning=False)
    counted = DiffusionObjective(graph, schedule, time_conditioning=False, mask_count=True)
    model = bernoulli.build_model(config).eval()
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.5)
    x_0 = torch.tensor([[0, 2, 1, 1]])
    exact = 0.0
    with torch.no_grad():
        for mask in itertools.product([False, True], repeat=seq_len):
            size = sum(mask)
            if size == 0:
                continue
            x_t = torch.where(torch.tensor([mask]), graph.mask_id, x_0)
            log_p = model(x_t, torch.ones(1)).gather(-1, x_0[..., None]).squeeze(-1) + math.log(math.expm1(1.0))
            weight = math.factorial(size - 1) * math.factorial(seq_len - size) / math.factorial(seq_len)
            exact += weight * float(-log_p[0, list(mask)].sum())
        draws = 20000
        for objective in (bernoulli, counted):
            batch = objective.draw(x_0.expand(draws, -1), torch.Generator().manual_seed(1))
            losses = objective.loss(model, batch).double()
            error = float(losses.std()) / math.sqrt(draws)
            assert abs(float(losses.mean()) - exact) < 4 * error, (objective.mask_count, float(losses.mean()), exact)
    sizes = (batch["x_t"] == graph.mask_id).sum(-1)
    assert torch.equal(sizes.bincount(minlength=5)[1:], torch.full((4,), draws // 4))  # stratified: exactly uniform


def _time_independent(seq_len: int, mask_count: bool = True):
    graph = AbsorbingGraph(3)
    objective = DiffusionObjective(graph, LogLinearSchedule(), time_conditioning=False, mask_count=mask_count)
    torch.manual_seed(0)
    config = ModelConfig(hidden_size=32, cond_dim=16, n_blocks=2, n_heads=2, seq_len=seq_len, time_conditioning=False)
    model = objective.build_model(config)
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.4)
    return objective, model.double().eval()


def _mean_and_error(values: torch.Tensor) -> tuple[float, float]:
    return float(values.mean()), float(values.std()) / values.numel() ** 0.5


def test_the_any_order_bound_against_every_mask_and_the_first_hitting_law():
    """``nll`` of a time-independent network against brute force over every mask of a length-4 sequence: unbiased
    for the any-order bound, which bounds the law the first-hitting sampler draws (every order enumerated)."""
    import math

    from reference import all_sequences, block_bound, block_order_law

    objective, model = _time_independent(seq_len=4)
    mask = objective.graph.mask_id
    sigma_bar = torch.ones(1, dtype=torch.float64)  # any level: the network's output is only scaled by it

    def denoiser(x_t, x_0):  # log p_theta(y | x_t)
        return model(x_t, sigma_bar.expand(len(x_t))) + math.log(math.expm1(1.0))

    states = all_sequences(3, 4)
    with torch.no_grad():
        brute, law = block_bound(denoiser, states, 4, mask), block_order_law(denoiser, states, 4, mask)
    # the network computes its softmax in float32 even in a float64 copy: rounding of 1e-7
    torch.testing.assert_close(law.sum(), torch.tensor(1.0, dtype=torch.float64), rtol=0, atol=1e-6)
    assert (brute >= -law.log() - 1e-6).all() and float((brute + law.log()).max()) > 1e-3  # a bound, not equal
    picked = torch.tensor([0, 31, 62])
    x_0 = states[picked].repeat_interleave(4000, dim=0)
    for num_t in (1, 4, 6):  # fewer, as many and more counts than positions
        nll = objective.nll(model, x_0, generator=torch.Generator().manual_seed(num_t), num_t=num_t).view(3, -1)
        for row, index in zip(nll, picked, strict=True):
            mean, error = _mean_and_error(row)
            assert abs(mean - float(brute[index])) < 4 * error, (num_t, mean, float(brute[index]))
    # with as many counts as positions each count is drawn once: the only randomness left is which positions
    spread = objective.nll(model, x_0, generator=torch.Generator().manual_seed(0), num_t=4).view(3, -1).std(-1)
    assert (
        spread < objective.nll(model, x_0, generator=torch.Generator().manual_seed(0), num_t=1).view(3, -1).std(-1)
    ).all()


def test_the_any_order_bound_of_the_exact_conditionals_is_the_likelihood():
    """With the exact score of a distribution every order gives the same chain rule, so ``nll`` estimates
    ``-log p(x_0)`` itself; the bound over times (``elbo``) has the same mean up to the schedule's ``eps``."""
    from reference import all_sequences, random_data

    from scorediff import ExactScore, elbo

    graph, schedule = AbsorbingGraph(3), LogLinearSchedule()
    objective = DiffusionObjective(graph, schedule, time_conditioning=False, mask_count=True)
    data = random_data(3, 3, seed=2)
    exact = ExactScore(graph, data)
    states = all_sequences(3, 3)
    for index in (4, 17):
        x_0 = states[index].expand(4000, 3)
        nll = objective.nll(exact, x_0, generator=torch.Generator().manual_seed(index), num_t=3)
        mean, error = _mean_and_error(nll)
        assert abs(mean + float(data.reshape(-1)[index].log())) < 4 * error, (mean, error)
        times = elbo(exact, graph, schedule, x_0, num_t=3, generator=torch.Generator().manual_seed(index))
        assert float(nll.std()) < float(times.std())  # the time form's 1 / t weights spread its draws


@pytest.mark.parametrize("graph_name", ["absorbing", "uniform"])
def test_the_conditional_bound_given_a_prompt_is_the_bound_of_the_answer(graph_name):
    """``q = delta_a x r``: the bound of ``y`` given the prompt ``a`` (``given``), with the exact score of ``q``,
    equals the unconditional bound of ``y`` under ``r`` by quadrature (within Monte Carlo error)."""
    from reference import diffusion_integral, random_data

    from scorediff import ExactScore, UniformGraph, elbo

    graph = AbsorbingGraph(3) if graph_name == "absorbing" else UniformGraph(3)
    schedule = LogLinearSchedule()
    answer = random_data(3, 2, seed=6)
    joint = torch.zeros(3, 3, 3, dtype=torch.float64)
    joint[1] = answer
    x_0 = torch.tensor([1, 2, 0]).expand(4000, 3)
    given = torch.tensor([True, False, False]).expand(4000, 3)
    generator = torch.Generator().manual_seed(0)
    estimates = elbo(ExactScore(graph, joint), graph, schedule, x_0, num_t=16, generator=generator, given=given)
    hi = float(schedule.total(torch.tensor(1.0, dtype=torch.float64)))
    y = torch.tensor([2, 0])
    expected = diffusion_integral(graph, ExactScore(graph, answer), y, 0.0, hi) + float(graph.prior_kl(y, hi).sum())
    mean, error = _mean_and_error(estimates)
    assert abs(mean - expected) < 4 * error and error < 0.05, (mean, expected, error)


def test_the_any_order_bound_given_a_prompt_is_the_answers_likelihood():
    """Exact conditionals of ``q = delta_a x r``: the any-order bound of the answer given the prompt is
    ``-log r(answer)``; training draws never mask the prompt and spread their counts evenly over 1..n."""
    from reference import random_data

    from scorediff import ExactScore

    graph = AbsorbingGraph(3)
    objective = DiffusionObjective(graph, LogLinearSchedule(), time_conditioning=False, mask_count=True)
    answer = random_data(3, 3, seed=7)
    joint = torch.zeros(3, 3, 3, 3, dtype=torch.float64)
    joint[2] = answer
    x_0 = torch.tensor([2, 0, 1, 1]).expand(6000, 4)
    given = torch.tensor([True, False, False, False]).expand(6000, 4)
    nll = objective.nll(ExactScore(graph, joint), x_0, generator=torch.Generator().manual_seed(3), num_t=2, given=given)
    mean, error = _mean_and_error(nll)
    assert abs(mean + float(answer[0, 1, 1].log())) < 4 * error, (mean, error)
    batch = objective.draw(x_0.clone(), torch.Generator().manual_seed(0), given=given.clone())
    masked = batch["x_t"] == graph.mask_id
    assert not masked[:, 0].any() and torch.equal(batch["given"], given)
    assert torch.equal(masked.sum(-1).bincount(minlength=4)[1:], torch.full((3,), 2000))  # uniform on 1..3
    assert torch.allclose(batch["t"], masked.sum(-1).double() / 3)  # the weight 1 / t is n / k


@pytest.mark.parametrize("time_conditioning", [False, True])
def test_sample_in_an_order_keeps_the_prompt_and_takes_ceil_n_over_k_calls(time_conditioning):
    graph = AbsorbingGraph(5)
    objective = DiffusionObjective(graph, LogLinearSchedule(), time_conditioning=time_conditioning)
    torch.manual_seed(0)
    config = ModelConfig(hidden_size=32, cond_dim=16, n_blocks=1, n_heads=2, seq_len=12,
                         time_conditioning=time_conditioning)  # fmt: skip
    model = objective.build_model(config).eval()
    tokens = torch.randint(0, 5, (3, 12), generator=torch.Generator().manual_seed(1))
    given = torch.zeros_like(tokens, dtype=torch.bool)
    given[:, :5] = True  # 7 positions to fill
    for order, k, calls in (("confidence", 1, 7), ("margin", 3, 3), ("entropy", 7, 1), ("random", 2, 4)):
        drawn = objective.sample(
            model, (3, 12), SamplingOptions(order=order, tokens_per_step=k, bf16=False), condition=(tokens, given)
        )
        x, stats = drawn.tokens, drawn.stats
        assert torch.equal(x[given], tokens[given]) and (x < 5).all() and stats.nfe == calls, (order, stats)
    options = SamplingOptions(order="confidence", steps=4)
    stats = objective.sample(model, (3, 12), options, condition=(tokens, given)).stats
    assert stats.nfe == 4  # ceil(7 / 4) = 2 positions per call
    options = SamplingOptions(order="confidence", bf16=False)
    greedy = objective.sample(model, (3, 12), options, condition=(tokens, given)).tokens
    again = objective.sample(model, (3, 12), options, condition=(tokens, given)).tokens
    assert torch.equal(greedy, again)  # greedy tokens in a fixed order: deterministic
    with pytest.raises(ValueError, match="order must be one of random, confidence"):
        objective.sample(model, (3, 12), SamplingOptions.of(order="sideways"))
    with pytest.raises(ValueError, match="tokens_per_step must be a whole number >= 1; got 0"):
        objective.sample(model, (3, 12), SamplingOptions.of(order="confidence", tokens_per_step=0))
