"""What every objective promises the trainer and the commands: draws, losses and scores of the right shape and
kind, the per-example fields it takes, and generation through ``scorediff.generation.generate`` that keeps what
it is given."""

import pytest
import torch

from scorediff import AbsorbingGraph, LogLinearSchedule, UniformGraph
from scorediff.config import ConfigError, load_config
from scorediff.generation import Generation, generate, sampling_options
from scorediff.model import ModelConfig
from scorediff.objectives import AutoregressiveObjective, BlockDiffusionObjective, DiffusionObjective
from scorediff.sampling.options import SamplingOptions

NUM_TOKENS, SEQ_LEN, ROWS = 5, 8, 4


def objectives():
    schedule = LogLinearSchedule()
    return {
        "absorbing": (DiffusionObjective(AbsorbingGraph(NUM_TOKENS), schedule), True),
        "absorbing-any-order": (
            DiffusionObjective(AbsorbingGraph(NUM_TOKENS), schedule, time_conditioning=False, mask_count=True),
            False,
        ),
        "uniform": (DiffusionObjective(UniformGraph(NUM_TOKENS), schedule), True),
        "block": (BlockDiffusionObjective(AbsorbingGraph(NUM_TOKENS), schedule, block_size=4), False),
        "autoregressive": (AutoregressiveObjective(NUM_TOKENS), False),
    }


def build(name, arch="dit"):
    objective, time_conditioning = objectives()[name]
    torch.manual_seed(0)
    block = 4 if name == "block" else 0
    config = ModelConfig(hidden_size=32, cond_dim=16, n_blocks=1, n_heads=2, seq_len=SEQ_LEN, arch=arch,
                         time_conditioning=time_conditioning, block_size=block)  # fmt: skip
    return objective, objective.build_model(config).eval()


@pytest.mark.parametrize("arch", ["dit", "llama"])
@pytest.mark.parametrize("name", sorted(objectives()))
def test_every_objective_draws_scores_and_generates(name, arch):
    objective, model = build(name, arch)
    x_0 = torch.randint(0, NUM_TOKENS, (ROWS, SEQ_LEN), generator=torch.Generator().manual_seed(1))
    batch = objective.draw(x_0, torch.Generator().manual_seed(0))
    assert all(value.shape[0] == ROWS for value in batch.values())
    loss = objective.loss(model, batch)
    assert loss.shape == (ROWS,) and torch.isfinite(loss).all() and (loss >= 0).all()
    nll = objective.nll(model, x_0, generator=torch.Generator().manual_seed(0), num_t=2)
    assert nll.dtype == torch.float64 and nll.shape == (ROWS,) and (nll > 0).all()
    given = torch.zeros_like(x_0, dtype=torch.bool)
    given[:, :4] = True  # a prompt: the one kind of condition every objective takes
    options = {"bf16": False} if name == "autoregressive" else {"bf16": False, "steps": 4}
    drawn = generate(objective, model, (ROWS, SEQ_LEN), condition=(x_0, given), seed=3, **options)
    assert isinstance(drawn, Generation) and drawn.tokens.shape == (ROWS, SEQ_LEN) and drawn.stats.nfe >= 1
    assert torch.equal(drawn.tokens[given], x_0[given]) and (drawn.tokens < NUM_TOKENS).all()
    again = generate(objective, model, (ROWS, SEQ_LEN), condition=(x_0, given), seed=3, **options)
    assert torch.equal(drawn.tokens, again.tokens)  # the seed fixes every draw
    prompted = objective.draw(x_0, torch.Generator().manual_seed(0), given=given)
    conditional = objective.nll(model, x_0, generator=torch.Generator().manual_seed(0), num_t=2, given=given)
    assert torch.isfinite(objective.loss(model, prompted)).all() and (conditional < nll).all()


def test_the_run_config_names_the_options_every_command_uses():
    diffusion = load_config("tiny", ["sampling.temperature=0.7", "sampling.order=margin", "sampling.tokens_per_step=2"])
    expected = SamplingOptions(temperature=0.7, order="margin", tokens_per_step=2)
    assert sampling_options(diffusion) == expected and expected.changed() == ["temperature", "order", "tokens_per_step"]
    autoregressive = load_config("tiny-ar", ["sampling.top_p=0.9", "sampling.steps=64"])
    assert sampling_options(autoregressive) == SamplingOptions(top_p=0.9)  # the diffusion fields are not its own
    with pytest.raises(ConfigError, match="sampling.order must be one of"):
        load_config("tiny", ["sampling.order=sideways"])
    with pytest.raises(ConfigError, match="sampling.predictor must be one of"):
        load_config("tiny", ["sampling.predictor=leapfrog"])
    with pytest.raises(ConfigError, match=r"sampling.temperature must be finite and > 0; got 0.0"):
        load_config("tiny", ["sampling.temperature=0"])


@pytest.mark.parametrize("name", sorted(objectives()))
def test_every_objective_returns_a_generation_and_refuses_the_options_it_does_not_read(name):
    objective, model = build(name)
    drawn = objective.sample(model, (2, SEQ_LEN), SamplingOptions(bf16=False, steps=2) if name != "autoregressive"
                             else SamplingOptions(bf16=False))  # fmt: skip
    assert isinstance(drawn, Generation) and drawn.tokens.shape == (2, SEQ_LEN) and drawn.trajectory is None
    assert drawn.stats.tokens == 2 * SEQ_LEN
    if name == "autoregressive":
        with pytest.raises(ValueError, match="steps does not apply to an autoregressive model"):
            objective.sample(model, (2, SEQ_LEN), SamplingOptions(steps=4))
    else:  # the random order's samplers only draw: greedy needs an order
        with pytest.raises(ValueError, match="greedy applies to decoding in an order"):
            objective.sample(model, (2, SEQ_LEN), SamplingOptions(greedy=True))
