"""The block diffusion network: its one-pass training form and its block-by-block cached form compute the same
conditionals, and each block sees exactly its own noised tokens and the clean blocks before it."""

import pytest
import torch

from scorediff.builders import build_objective
from scorediff.config import ConfigError, load_config
from scorediff.model import BlockDiffusionTransformer, ModelConfig, build_network
from scorediff.model.attention import block_diffusion_mask

NUM_TOKENS = 5
MASK = NUM_TOKENS


#: The llama twin with one key/value head, so that the cache holds grouped keys and values, and its shifted form
#: (an AR model adapted: ``model.shifted_block``, whose own tests are in test_shifted_block.py).
ARCHS = {
    "dit": {},
    "llama": {"arch": "llama", "n_kv_heads": 1},
    "shifted": {"arch": "llama", "n_kv_heads": 1, "shift": True},
}
#: The unshifted networks: labels and the BD3-LM attention pattern (a shifted block's first position reads the
#: clean token before it instead of its own block).
UNSHIFTED = ["dit", "llama"]


def random_network(
    block_size: int, seq_len: int = 8, num_labels: int = 0, arch: str = "dit"
) -> BlockDiffusionTransformer:
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=NUM_TOKENS + 1, hidden_size=32, cond_dim=16, n_blocks=2, n_heads=2, seq_len=seq_len,
        time_conditioning=False, scale_by_sigma=False, block_size=block_size, num_labels=num_labels, **ARCHS[arch],
    )  # fmt: skip
    network = build_network("block_diffusion", config, mask_id=MASK)
    assert isinstance(network, BlockDiffusionTransformer)
    for parameter in network.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    return network.double().eval()


def noised(seed: int, batch_size: int = 3, seq_len: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x_0 = torch.randint(0, NUM_TOKENS, (batch_size, seq_len), generator=generator)
    x_t = torch.where(torch.rand(x_0.shape, generator=generator) < 0.5, MASK, x_0)
    return x_0, x_t


def blockwise(network, x_t, x_0, label=None):
    """The same conditionals from the cache: each noised block after the clean blocks before it."""
    size = network.config.block_size
    cache = network.new_cache(x_0.shape[0], x_0.shape[1])
    parts = []
    for start in range(0, x_0.shape[1], size):
        parts.append(network.block_log_probs(x_t[:, start : start + size], cache, label))
        network.extend_cache(x_0[:, start : start + size], cache, label)
    return torch.cat(parts, dim=1)


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("block_size", [1, 2, 4, 8])
def test_the_training_pass_equals_the_cached_blocks(block_size, arch):
    network = random_network(block_size, arch=arch)
    x_0, x_t = noised(1)
    with torch.no_grad():
        together = network(x_t, x_0)
        apart = blockwise(network, x_t, x_0)
    data = slice(0, NUM_TOKENS)  # the mask column is -inf in both
    torch.testing.assert_close(together[..., data], apart[..., data], rtol=0, atol=1e-10)
    assert together[..., MASK].eq(-torch.inf).all()
    torch.testing.assert_close(together[..., data].exp().sum(-1), torch.ones(3, 8))


@pytest.mark.parametrize("arch", UNSHIFTED)
def test_a_label_conditions_both_forms(arch):
    network = random_network(2, num_labels=3, arch=arch)
    x_0, x_t = noised(2)
    label = torch.tensor([0, 2, -1])
    with torch.no_grad():
        together, apart = network(x_t, x_0, label), blockwise(network, x_t, x_0, label)
        other = network(x_t, x_0, torch.tensor([1, 2, -1]))
    torch.testing.assert_close(together[..., :NUM_TOKENS], apart[..., :NUM_TOKENS], rtol=0, atol=1e-10)
    assert not torch.allclose(together[0], other[0]) and torch.equal(together[1:], other[1:])


@pytest.mark.parametrize("arch", UNSHIFTED)
def test_a_block_sees_its_noised_tokens_and_the_clean_blocks_before_it(arch):
    network = random_network(2, arch=arch)
    x_0, x_t = noised(3)
    with torch.no_grad():
        reference = network(x_t, x_0)
        later_clean = x_0.clone()
        later_clean[:, 4:] = (later_clean[:, 4:] + 1) % NUM_TOKENS  # clean blocks 2 and 3 changed
        first_half = network(x_t, later_clean)[:, :4]
        other_noise = x_t.clone()
        other_noise[:, 6:] = MASK  # block 3 noised differently
        noised_elsewhere = network(other_noise, x_0)[:, :6]
        earlier_clean = x_0.clone()
        earlier_clean[:, 0] = (earlier_clean[:, 0] + 1) % NUM_TOKENS
        moved = network(x_t, earlier_clean)
    assert torch.equal(first_half, reference[:, :4])
    assert torch.equal(noised_elsewhere, reference[:, :6])
    assert torch.equal(moved[:, :2], reference[:, :2])  # block 0 does not see its own clean tokens
    assert not torch.allclose(moved[:, 2:], reference[:, 2:])  # every later block does


def test_the_mask_layout():
    mask = block_diffusion_mask(4, 2)
    noised_rows = [
        [1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, 1, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 1, 0, 0],
    ]
    clean_rows = [
        [0, 0, 0, 0, 1, 1, 0, 0],
        [0, 0, 0, 0, 1, 1, 0, 0],
        [0, 0, 0, 0, 1, 1, 1, 1],
        [0, 0, 0, 0, 1, 1, 1, 1],
    ]
    assert mask.tolist() == [[bool(v) for v in row] for row in noised_rows + clean_rows]


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_a_finished_block_can_ride_along_with_the_next_call(arch):
    network = random_network(2, arch=arch)
    x_0, x_t = noised(5)
    with torch.no_grad():
        apart = blockwise(network, x_t, x_0)
        cache = network.new_cache(3, 8)
        parts = [network.block_log_probs(x_t[:, :2], cache)]
        for start in range(2, 8, 2):
            parts.append(network.block_log_probs(x_t[:, start : start + 2], cache, clean=x_0[:, start - 2 : start]))
        together = torch.cat(parts, dim=1)
    assert cache.length == 6 + network.config.shift  # the last block is never appended (a shifted cache holds BOS)
    torch.testing.assert_close(together[..., :NUM_TOKENS], apart[..., :NUM_TOKENS], rtol=0, atol=1e-10)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_cache_rows_can_be_selected(arch):
    network = random_network(4, arch=arch)
    x_0, x_t = noised(4, batch_size=4)
    rows = torch.tensor([True, False, True, True])
    with torch.no_grad():
        cache = network.new_cache(4, 8)
        network.extend_cache(x_0[:, :4], cache)
        full = network.block_log_probs(x_t[:, 4:], cache)
        picked = network.block_log_probs(x_t[rows, 4:], cache.select(rows, 4))
    torch.testing.assert_close(picked[..., :NUM_TOKENS], full[rows][..., :NUM_TOKENS], rtol=0, atol=1e-10)


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="block_size must divide seq_len = 8; got 3"):
        ModelConfig(seq_len=8, block_size=3)
    for overrides in (["diffusion.graph=uniform"], ["model.time_conditioning=true", "diffusion.mask_count=false"]):
        config = load_config("tiny", ["model.block_size=4", *overrides])
        with pytest.raises(ConfigError, match="needs diffusion.graph=absorbing and model.time_conditioning=false"):
            build_objective(config, 10)
    with pytest.raises(ConfigError, match="model.block_size applies to block diffusion"):
        build_objective(load_config("tiny-ar", ["model.block_size=4"]), 10)
    with pytest.raises(ValueError, match=r"call model\(x_t, x_0\)"):
        random_network(2).clean_log_probs(torch.zeros(1, 8, dtype=torch.int64))
