"""bf16 autocast for training steps: on only where the hardware does bf16 natively, and numerically sane."""

import torch

from scorediff.devices import bf16_autocast, fast_bf16
from scorediff.graphs import AbsorbingGraph
from scorediff.losses import sample_times, weighted_score_entropy
from scorediff.model import ModelConfig, SEDDTransformer
from scorediff.schedules import LogLinearSchedule

CPU = torch.device("cpu")


def test_autocast_follows_the_switch_and_the_hardware():
    with bf16_autocast(CPU, enabled=False):
        assert not torch.is_autocast_enabled("cpu")
    with bf16_autocast(CPU, enabled=True):
        assert torch.is_autocast_enabled("cpu") == fast_bf16(CPU)
        if fast_bf16(CPU):
            assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert fast_bf16(torch.device("meta")) is False


def test_bf16_loss_and_gradients_track_float32():
    torch.manual_seed(0)
    graph, schedule = AbsorbingGraph(20), LogLinearSchedule()
    model = SEDDTransformer(
        ModelConfig(vocab_size=21, hidden_size=64, cond_dim=32, n_blocks=2, n_heads=4, seq_len=32, scale_by_sigma=True),
        graph.mask_id,
    )
    for parameter in model.parameters():  # out of the zero-initialised output layer, so the network matters
        parameter.data.add_(0.05 * torch.randn_like(parameter))
    generator = torch.Generator().manual_seed(1)
    x_0 = torch.randint(0, 20, (16, 32), generator=generator)
    t = sample_times(16, generator=generator)
    x_t = graph.sample_transition(x_0, schedule.total(t), generator=generator)

    def loss_and_grads(autocast):
        model.zero_grad()
        with autocast:
            log_score = model(x_t, schedule.total(t))
            loss = weighted_score_entropy(model, graph, schedule, x_0, t, x_t=x_t).mean()
        loss.backward()
        return log_score.dtype, float(loss.detach()), torch.cat([p.grad.flatten() for p in model.parameters()])

    dtype32, loss32, grad32 = loss_and_grads(torch.autocast("cpu", enabled=False))
    dtype16, loss16, grad16 = loss_and_grads(torch.autocast("cpu", dtype=torch.bfloat16))
    assert dtype32 == dtype16 == torch.float32  # the score entropy is computed in float32 either way
    assert abs(loss16 - loss32) < 0.01 * abs(loss32)
    cosine = torch.nn.functional.cosine_similarity(grad16, grad32, dim=0)
    assert cosine > 0.99, cosine
