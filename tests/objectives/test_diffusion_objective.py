"""The diffusion objective's loss is the score entropy, in whichever form it computes it."""

import torch

from scorediff import AbsorbingGraph, LogLinearSchedule, weighted_score_entropy
from scorediff.model import ModelConfig
from scorediff.objectives import DiffusionObjective


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
