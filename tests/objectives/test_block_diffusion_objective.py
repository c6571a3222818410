"""Block diffusion: the bound against brute force over every mask, its limits (exact for exact conditionals, the
autoregressive chain rule for blocks of one), the loss as the bound in expectation, and the block sampler
against the exact law of the denoiser it samples."""

import math

import pytest
import torch
from reference import (
    ExactBlockDenoiser,
    all_sequences,
    block_bound,
    block_order_law,
    flat_index,
    random_data,
    total_variation,
)

from scorediff import AbsorbingGraph, LogLinearSchedule
from scorediff.model import ModelConfig
from scorediff.objectives import BlockDiffusionObjective
from scorediff.sampling.options import SamplingOptions

NUM_TOKENS = 3
MASK = NUM_TOKENS
NUM_SAMPLES = 60_000


def objective_and_network(block_size: int, seq_len: int, mask_count: bool = True):
    objective = BlockDiffusionObjective(AbsorbingGraph(NUM_TOKENS), LogLinearSchedule(), block_size, mask_count)
    torch.manual_seed(0)
    config = ModelConfig(
        hidden_size=32, cond_dim=16, n_blocks=2, n_heads=2, seq_len=seq_len, time_conditioning=False,
        block_size=block_size,
    )  # fmt: skip
    network = objective.build_model(config)
    for parameter in network.parameters():
        torch.nn.init.normal_(parameter, std=0.4)
    return objective, network.double().eval()


def mean_and_error(values: torch.Tensor) -> tuple[float, float]:
    return float(values.mean()), float(values.std()) / math.sqrt(values.numel())


def test_the_estimate_is_unbiased_and_exact_conditionals_make_it_the_likelihood():
    data = random_data(NUM_TOKENS, 4, seed=1)
    exact = ExactBlockDenoiser(data, block_size=2)
    objective = BlockDiffusionObjective(AbsorbingGraph(NUM_TOKENS), LogLinearSchedule(), 2)
    states = all_sequences(NUM_TOKENS, 4)
    # with the exact conditionals every ordering of a block gives the same chain rule: the bound is -log p(x)
    torch.testing.assert_close(block_bound(exact, states, 2, MASK), -data.reshape(-1).log(), rtol=0, atol=1e-12)
    x_0 = states[[5, 40, 77]].repeat_interleave(3000, dim=0)  # 3,000 independent estimates of three sequences
    estimates = objective.nll(exact, x_0, generator=torch.Generator().manual_seed(0), num_t=2).view(3, -1)
    for row, index in zip(estimates, [5, 40, 77], strict=True):
        mean, error = mean_and_error(row)
        assert abs(mean + math.log(float(data.reshape(-1)[index]))) < 4 * error


@pytest.mark.parametrize("mask_count", [True, False])
def test_bound_and_loss_against_every_mask_of_a_network(mask_count):
    objective, network = objective_and_network(block_size=2, seq_len=4, mask_count=mask_count)
    states = all_sequences(NUM_TOKENS, 4)
    with torch.no_grad():
        brute = block_bound(network, states, 2, MASK)  # (81,)
        law = block_order_law(network, states, 2, MASK)  # what the first-hitting block sampler draws
    torch.testing.assert_close(law.sum(), torch.tensor(1.0, dtype=torch.float64), rtol=0, atol=1e-6)
    assert (brute >= -law.log() - 1e-6).all()  # a bound on the sampler's own likelihood (Jensen over orders)
    assert float((brute + law.log()).max()) > 1e-3  # and not an equality: the network is not consistent
    picked = torch.tensor([0, 31, 62])
    # interleaved copies: the training draws are stratified along the batch, so each sequence sees them all
    x_0 = states[picked].repeat(4000, 1)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        nll = objective.nll(network, x_0, generator=generator, num_t=2).view(-1, 3).T
        loss = objective.loss(network, objective.draw(x_0, generator)).double().view(-1, 3).T
    # without mask counts, training times start at t_min = 1e-3 and the log-linear schedule masks with
    # probability (1 - 1e-3) t: a bias of that order (relative) against the count form of the bound
    bias = 0.0 if mask_count else 3e-3 * float(brute[picked].max())
    for estimate, slack in ((nll, 0.0), (loss, bias)):  # both unbiased for the bound (up to that)
        for row, index in zip(estimate, picked, strict=True):
            mean, error = mean_and_error(row)
            assert abs(mean - float(brute[index])) < 4 * error + slack + 1e-6


@pytest.mark.parametrize("mask_count", [True, False])
def test_with_a_prompt_given_bound_and_loss_are_the_conditional_bound(mask_count):
    """Positions 0-2 given (a whole block and half of the next): brute force over the masks of the free positions,
    against the stratified estimate and the training loss; the given positions are never masked."""
    objective, network = objective_and_network(block_size=2, seq_len=6, mask_count=mask_count)
    states = all_sequences(NUM_TOKENS, 6)[[0, 200, 500]]
    prompt = (0, 1, 2)
    with torch.no_grad():
        brute = block_bound(network, states, 2, MASK, given=prompt)  # (3,)
        unconditional = block_bound(network, states, 2, MASK)
    assert (unconditional - brute).min() > 0.1  # the prompt's own terms are gone
    x_0 = states.repeat(4000, 1)
    given = torch.zeros_like(x_0, dtype=torch.bool)
    given[:, list(prompt)] = True
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        nll = objective.nll(network, x_0, generator=generator, num_t=2, given=given).view(-1, 3).T
        batch = objective.draw(x_0, generator, given=given)
        loss = objective.loss(network, batch).double().view(-1, 3).T
    assert not (batch["x_t"][given] == MASK).any() and (batch["x_t"] == MASK).any()
    if mask_count:  # a block with nothing free weighs nothing (a time's weight is left, on no masked position)
        assert batch["weight"][:, :2].eq(0).all()
    bias = 0.0 if mask_count else 3e-3 * float(brute.max())  # t_min, as in the unconditional test
    for estimate, slack in ((nll, 0.0), (loss, bias)):
        for row, expected in zip(estimate, brute, strict=True):
            mean, error = mean_and_error(row)
            assert abs(mean - float(expected)) < 4 * error + slack + 1e-6


def test_blocks_of_one_are_the_autoregressive_chain_rule():
    objective, network = objective_and_network(block_size=1, seq_len=3)
    states = all_sequences(NUM_TOKENS, 3)
    nll = objective.nll(network, states, generator=torch.Generator().manual_seed(0), num_t=3)
    chain = torch.zeros(len(states), dtype=torch.float64)
    with torch.no_grad():  # one position at a time, from the cache of the positions before it
        cache = network.new_cache(len(states), 3)
        for i in range(3):
            log_p = network.block_log_probs(torch.full((len(states), 1), MASK), cache)[:, 0]
            chain -= log_p.double().gather(-1, states[:, i : i + 1]).squeeze(-1)
            network.extend_cache(states[:, i : i + 1], cache)
    torch.testing.assert_close(nll, chain, rtol=0, atol=1e-5)  # float32 outputs
    torch.testing.assert_close((-nll).exp().sum(), torch.tensor(1.0, dtype=torch.float64), rtol=0, atol=1e-5)


def test_the_first_hitting_block_sampler_draws_the_denoisers_law():
    objective, network = objective_and_network(block_size=2, seq_len=4)
    states = all_sequences(NUM_TOKENS, 4)
    with torch.no_grad():
        law = block_order_law(network, states, 2, MASK)
    generator = torch.Generator().manual_seed(2)
    options = SamplingOptions(predictor="first_hitting", bf16=False)
    drawn = objective.sample(network, (NUM_SAMPLES, 4), options, generator=generator)
    x, stats = drawn.tokens, drawn.stats
    floor = total_variation(states[torch.multinomial(law, NUM_SAMPLES, True, generator=generator)], law, NUM_TOKENS)
    assert total_variation(x, law, NUM_TOKENS) <= floor + 0.006  # 60,000 draws of 81 states: floor about 0.015
    assert stats.nfe == 2 * 2  # two positions per block, one call each (the first block is cached with the second)


@pytest.mark.parametrize("predictor", ["analytic", "first_hitting"])
def test_exact_conditionals_sample_the_data_and_a_prefix_conditions_it(predictor):
    data = random_data(NUM_TOKENS, 4, seed=4)
    exact = ExactBlockDenoiser(data, block_size=2)
    objective = BlockDiffusionObjective(AbsorbingGraph(NUM_TOKENS), LogLinearSchedule(), 2)
    generator = torch.Generator().manual_seed(3)
    options = SamplingOptions(predictor=predictor, steps=512, bf16=False)
    x = objective.sample(exact, (20_000, 4), options, generator=generator).tokens
    reference = all_sequences(NUM_TOKENS, 4)[torch.multinomial(data.reshape(-1), 20_000, True, generator=generator)]
    floor = total_variation(reference, data, NUM_TOKENS)
    assert total_variation(x, data, NUM_TOKENS) <= floor + 0.012
    # a prefix of three tokens (it ends inside the second block): the rest is the exact conditional
    tokens = torch.tensor([2, 0, 1, 0]).expand(20_000, 4)
    given = torch.tensor([True, True, True, False]).expand(20_000, 4)
    filled = objective.sample(exact, (20_000, 4), options, condition=(tokens, given), generator=generator).tokens
    assert torch.equal(filled[:, :3], tokens[:, :3])
    conditional = data[2, 0, 1] / data[2, 0, 1].sum()
    counts = torch.bincount(filled[:, 3], minlength=NUM_TOKENS).double() / 20_000
    assert 0.5 * float((counts - conditional).abs().sum()) < 0.015  # 3 outcomes, 20,000 draws: floor about 0.006


def test_only_a_prefix_may_be_given_and_lengths_are_whole_blocks():
    objective, network = objective_and_network(block_size=2, seq_len=4)
    tokens = torch.zeros(2, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match="can only continue a prefix"):
        objective.sample(network, (2, 4), condition=(tokens, torch.tensor([[False, True, False, False]] * 2)))
    with pytest.raises(ValueError, match="trajectory does not apply to a block diffusion model"):
        objective.sample(network, (2, 4), SamplingOptions(trajectory=True))
    with pytest.raises(ValueError, match="whole blocks of 2; got length 3"):
        objective.nll(network, tokens[:, :3])
    assert objective.sequence_score(network) is None  # no score of the whole sequence: sampled through the objective
    past = objective.sample(network, (2, 7), SamplingOptions(bf16=False)).tokens  # past the context
    assert flat_index(past, NUM_TOKENS).shape == (2,)


@pytest.mark.parametrize("guidance", [0.0, 2.0])
def test_skipping_unchanged_rows_draws_the_same_tokens(guidance):
    objective = BlockDiffusionObjective(AbsorbingGraph(NUM_TOKENS), LogLinearSchedule(), 4)
    torch.manual_seed(0)
    config = ModelConfig(
        hidden_size=32, cond_dim=16, n_blocks=2, n_heads=2, seq_len=16, time_conditioning=False, block_size=4,
        num_labels=2,
    )  # fmt: skip
    network = objective.build_model(config)
    for parameter in network.parameters():
        torch.nn.init.normal_(parameter, std=0.4)
    network = network.double().eval()

    def run(cache: bool, label: int = 1):
        generator = torch.Generator().manual_seed(5)
        options = SamplingOptions(steps=256, cache=cache, label=label, guidance=guidance, bf16=False)
        drawn = objective.sample(network, (6, 16), options, generator=generator)
        return drawn.tokens, drawn.stats

    (cached, fast), (plain, slow) = run(True), run(False)
    assert torch.equal(cached, plain)
    assert slow.nfe == 4 * (64 + 1)  # 64 steps and the denoising step per block (finished blocks ride along)
    assert fast.nfe <= 4 * (6 * 4 + 1)  # a row changes at most 4 times a block: at most 25 calls a block
    assert not torch.equal(run(False, label=0)[0], plain)  # the label matters


def test_labels_are_checked():
    objective, network = objective_and_network(block_size=2, seq_len=4)
    with pytest.raises(ValueError, match="no labels"):
        objective.sample(network, (2, 4), SamplingOptions(label=0))
    with pytest.raises(ValueError, match="guidance needs a label"):
        objective.sample(network, (2, 4), SamplingOptions(guidance=1.0))


def reference_block_path(exact: ExactBlockDenoiser, row: torch.Tensor, block_size: int) -> torch.Tensor:
    """Blocks left to right; inside each, one position at a time: the masked one whose top-1 probability under
    the exact conditionals (the later blocks still masked) is largest gets its most probable token."""
    x = row.clone()
    for start in range(0, len(x), block_size):
        inside = torch.zeros(len(x), dtype=torch.bool)
        inside[start : start + block_size] = True
        while ((x == MASK) & inside).any():
            log_p = exact.conditionals(x[None], (x != MASK)[None])[0, :, :NUM_TOKENS]
            best = log_p.max(-1)
            scores = torch.where((x == MASK) & inside, best.values, -math.inf)
            position = int(scores.argmax())
            x[position] = best.indices[position]
    return x


@pytest.mark.parametrize("tokens_per_step", [1, 2])
def test_a_confidence_order_decodes_inside_each_block(tokens_per_step):
    """Greedy confidence order with exact conditionals: block by block, the surest position of the block first
    (checked against enumeration from every prefix); k tokens per call take ceil(free / k) calls per block."""
    data = random_data(NUM_TOKENS, 4, seed=6, concentration=0.3)
    exact = ExactBlockDenoiser(data, block_size=2)
    objective = BlockDiffusionObjective(AbsorbingGraph(NUM_TOKENS), LogLinearSchedule(), 2)
    prefixes = all_sequences(NUM_TOKENS, 1)  # a one-token prefix, and no prefix
    tokens = torch.cat([prefixes, torch.zeros(len(prefixes), 3, dtype=torch.int64)], dim=1)
    for given_count in (0, 1):
        given = torch.zeros_like(tokens, dtype=torch.bool)
        given[:, :given_count] = True
        options = SamplingOptions(order="confidence", tokens_per_step=tokens_per_step, bf16=False)
        drawn = objective.sample(exact, tuple(tokens.shape), options, condition=(tokens, given))
        out, stats = drawn.tokens, drawn.stats
        assert torch.equal(out[given], tokens[given])
        if tokens_per_step == 1:
            start = torch.where(given, tokens, MASK)
            expected = torch.stack([reference_block_path(exact, row, 2) for row in start])
            assert torch.equal(out, expected)
        assert stats.nfe == math.ceil((2 - given_count) / tokens_per_step) + math.ceil(2 / tokens_per_step)
