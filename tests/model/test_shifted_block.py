"""Block diffusion with the shifted prediction (``model.shifted_block``, an AR model adapted into block diffusion):
each block's first position is its AR parent's prediction, the other positions read their own noised block and the
clean blocks before it, blocks of one token give the parent's exact likelihood, and greedy decoding one token per
block is the parent's greedy decoding."""

import pytest
import torch

from scorediff.graphs import AbsorbingGraph
from scorediff.model import LlamaCausalTransformer, ModelConfig, build_network
from scorediff.model.shifted_block import shifted_block_mask, shifted_sources
from scorediff.objectives.autoregressive import AutoregressiveObjective
from scorediff.objectives.block_diffusion import BlockDiffusionObjective
from scorediff.sampling.block_diffusion import sample_blocks
from scorediff.schedules import LogLinearSchedule
from scorediff.training.adapt import adapted_weights

NUM_TOKENS = 7
MASK = NUM_TOKENS
SHAPE = dict(arch="llama", hidden_size=32, n_blocks=2, n_heads=4, n_kv_heads=2, seq_len=12)


def parent() -> LlamaCausalTransformer:
    """A random AR llama over ``NUM_TOKENS`` tokens (+ BOS), float64, its weights far from their initial scale."""
    torch.manual_seed(0)
    network = LlamaCausalTransformer(ModelConfig(vocab_size=NUM_TOKENS + 1, **SHAPE))
    for weight in network.parameters():
        weight.data.add_(0.3 * torch.randn_like(weight))
    return network.double().eval()


def adapted(ar: LlamaCausalTransformer, block_size: int):
    config = ModelConfig(vocab_size=NUM_TOKENS + 1, time_conditioning=False, shift=True, block_size=block_size, **SHAPE)
    child = build_network("block_diffusion", config, mask_id=MASK)
    child.load_state_dict(adapted_weights(ar, child))
    return child.double().eval()


def next_token_log_probs(ar, x_0: torch.Tensor) -> torch.Tensor:
    """The parent's ``log p(x_i | x_<i)`` for every ``i``, (B, L, N)."""
    bos = torch.full((x_0.shape[0], 1), ar.bos_id)
    return ar(torch.cat([bos, x_0[:, :-1]], dim=1))[..., :NUM_TOKENS]


def draws(seed: int, batch_size: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x_0 = torch.randint(0, NUM_TOKENS, (batch_size, SHAPE["seq_len"]), generator=generator)
    return x_0, torch.where(torch.rand(x_0.shape, generator=generator) < 0.5, MASK, x_0)


@pytest.mark.parametrize("block_size", [1, 3, 4])
def test_each_blocks_first_position_is_the_parents_prediction(block_size):
    ar = parent()
    child = adapted(ar, block_size)
    x_0, x_t = draws(1)
    with torch.no_grad():
        out = child(x_t, x_0)
        expected = next_token_log_probs(ar, x_0)
    starts = torch.arange(SHAPE["seq_len"]) % block_size == 0
    torch.testing.assert_close(out[:, starts, :NUM_TOKENS], expected[:, starts], rtol=0, atol=1e-10)
    if block_size > 1:  # elsewhere the noised block is read, and it differs from the clean tokens
        assert (out[:, ~starts, :NUM_TOKENS] - expected[:, ~starts]).abs().amax() > 1e-2
    assert out[..., MASK].eq(-torch.inf).all()


def test_what_each_position_sees():
    """Brute force over every (output, input) pair: changing ``x_t[j]`` moves output ``i`` exactly when ``j`` is in
    ``i``'s block and ``i`` is not the block's first position; changing ``x_0[j]`` exactly when ``j``'s block comes
    before ``i``'s."""
    block_size, length = 3, SHAPE["seq_len"]
    child = adapted(parent(), block_size)
    x_0, x_t = draws(2, batch_size=1)
    block = torch.arange(length) // block_size
    with torch.no_grad():
        base = child(x_t, x_0)[0, :, :NUM_TOKENS]
        for j in range(length):
            for which in ("noised", "clean"):
                x_t2, x_02 = x_t.clone(), x_0.clone()
                if which == "noised":
                    x_t2[0, j] = MASK if x_t[0, j] != MASK else x_0[0, j]
                else:
                    x_02[0, j] = (x_0[0, j] + 1) % NUM_TOKENS
                moved = (child(x_t2, x_02)[0, :, :NUM_TOKENS] - base).abs().amax(-1) > 1e-9  # (L,)
                i = torch.arange(length)
                if which == "noised":
                    expected = (block == block[j]) & (i % block_size != 0)
                else:
                    expected = block[j] < block
                assert moved.tolist() == expected.tolist(), (which, j)


def test_blocks_of_one_token_bound_the_likelihood_by_the_parents_exact_nll():
    ar = parent()
    graph, schedule = AbsorbingGraph(NUM_TOKENS), LogLinearSchedule()
    objective = BlockDiffusionObjective(graph, schedule, block_size=1)
    x_0, _ = draws(3)
    generator = torch.Generator().manual_seed(0)
    bound = objective.nll(adapted(ar, 1), x_0, generator=generator, num_t=2)
    exact = AutoregressiveObjective(NUM_TOKENS).nll(ar, x_0)
    torch.testing.assert_close(bound, exact, rtol=1e-10, atol=0)  # one term per token, weight B / k = 1


def test_greedy_decoding_a_token_per_block_is_the_parents_greedy_decoding():
    ar = parent()
    child = adapted(ar, 1)
    graph = AbsorbingGraph(NUM_TOKENS)
    x = torch.zeros(2, SHAPE["seq_len"], dtype=torch.int64)
    given = torch.zeros_like(x, dtype=torch.bool)
    x[:, :3], given[:, :3] = torch.tensor([[1, 2, 3], [4, 4, 0]]), True
    order = {"order": "confidence", "tokens_per_step": 1, "greedy": True}
    decoded, calls, _ = sample_blocks(child, graph, LogLinearSchedule(), x, given, 1, order=order)
    expected = x.clone()
    with torch.no_grad():
        for i in range(3, SHAPE["seq_len"]):
            expected[:, i] = next_token_log_probs(ar, expected)[:, i].argmax(-1)
    assert torch.equal(decoded, expected)
    assert calls == SHAPE["seq_len"] - 3  # one call per generated token: the cache and `after` hold the rest


def test_the_mask_and_the_read_positions():
    mask = shifted_block_mask(4, 2).int().tolist()
    #            x_t 0..3      BOS   x_0 0..3
    assert mask == [
        [1, 1, 0, 0, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 1, 0, 0, 0, 0],
        [0, 0, 1, 1, 1, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 1, 1, 0, 0],
        [0, 0, 0, 0, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 1, 0, 0, 0],
        [0, 0, 0, 0, 1, 1, 1, 0, 0],
        [0, 0, 0, 0, 1, 1, 1, 1, 0],
        [0, 0, 0, 0, 1, 1, 1, 1, 1],
    ]
    assert shifted_sources(4, 2).tolist() == [4, 0, 6, 2]  # BOS, x_t[0], x_0[1], x_t[2]


def test_a_shifted_block_network_takes_no_label():
    config = ModelConfig(vocab_size=NUM_TOKENS + 1, shift=True, block_size=2, num_labels=2, **SHAPE)
    with pytest.raises(ValueError, match="^a shifted block diffusion network is unconditioned"):
        build_network("block_diffusion", config, mask_id=MASK)
    child = adapted(parent(), 2)
    x_0, x_t = draws(4)
    with pytest.raises(ValueError, match="^this model is unconditional: it takes no label$"):
        child(x_t, x_0, torch.zeros(3, dtype=torch.int64))
