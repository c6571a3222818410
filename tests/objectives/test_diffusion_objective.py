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
