"""Block diffusion decoding with the KV cache against an uncached recomputation: every network call that
``sample_blocks`` makes through the cache (the clean blocks' keys and values, a shifted network's ``cache.after``,
rows picked by ``KVCache.select``, finished tokens riding along with a block's first call) gives what the one-pass
form ``network(x_t, x_0)`` gives from the tokens alone, and the decoded tokens are the same.

The reference keeps no keys or values: it remembers the finished tokens and runs the whole network on
``(x_t, x_0)`` at every call, so a cache entry that is skipped, stale or misplaced cannot be shared by both sides.
Blocks of 3 with one token per call give several calls per block, after a prompt that ends inside a block."""

import pytest
import torch
from reference import TokenCache

from scorediff import AbsorbingGraph, LogLinearSchedule
from scorediff.model import ModelConfig, build_network
from scorediff.sampling.block_diffusion import sample_blocks

NUM_TOKENS = 6
MASK = NUM_TOKENS
SEQ_LEN, BLOCK_SIZE, PROMPT = 12, 3, 4
ARCHS = {
    "dit": {},
    "llama": {"arch": "llama", "n_kv_heads": 1},
    "shifted": {"arch": "llama", "n_kv_heads": 1, "shift": True},  # an AR model adapted into blocks
}


def random_network(arch: str):
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=NUM_TOKENS + 1, hidden_size=32, cond_dim=16, n_blocks=2, n_heads=4, seq_len=SEQ_LEN,
        time_conditioning=False, scale_by_sigma=False, block_size=BLOCK_SIZE, **ARCHS[arch],
    )  # fmt: skip
    network = build_network("block_diffusion", config, mask_id=MASK)
    for parameter in network.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    return network.double().eval()


class Uncached:
    """The block denoiser contract of ``sample_blocks`` with no KV cache: the finished tokens are kept as tokens
    (``TokenCache``) and each call runs ``network(x_t, x_0)`` over the whole sequence, the block's noised tokens in
    ``x_t`` and the finished ones in ``x_0`` (what lies after the block is seen by no output of it)."""

    def __init__(self, network):
        self.network, self.config = network, network.config

    def new_cache(self, batch_size: int, max_len: int, device=None) -> TokenCache:
        return TokenCache(torch.zeros(batch_size, 0, dtype=torch.int64))

    def block_log_probs(self, x_t, cache: TokenCache, label=None, clean=None):
        if clean is not None:
            cache.tokens = torch.cat([cache.tokens, clean], dim=1)
            cache.length = cache.tokens.shape[1]
        start, stop = cache.length, cache.length + x_t.shape[1]
        x_0 = torch.zeros(x_t.shape[0], SEQ_LEN, dtype=torch.int64)
        x_0[:, :start] = cache.tokens
        noised = torch.full_like(x_0, MASK)
        noised[:, start:stop] = x_t
        with torch.no_grad():
            return self.network(noised, x_0)[:, start:stop]


def recording(denoiser, outputs: list):
    """``denoiser`` whose ``block_log_probs`` outputs are appended to ``outputs``."""
    inner = denoiser.block_log_probs

    def recorded(x_t, cache, label=None, clean=None):
        out = inner(x_t, cache, label, clean)
        outputs.append(out[..., :NUM_TOKENS].clone())
        return out

    denoiser.block_log_probs = recorded
    return denoiser


def prompted(batch_size: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(0, NUM_TOKENS, (batch_size, SEQ_LEN), generator=torch.Generator().manual_seed(1))
    given = torch.zeros_like(tokens, dtype=torch.bool)
    given[:, :PROMPT] = True
    return tokens, given


def decode(denoiser, order: dict | None, **options):
    tokens, given = prompted()
    graph, schedule = AbsorbingGraph(NUM_TOKENS), LogLinearSchedule()
    generator = torch.Generator().manual_seed(2)
    x, calls, _ = sample_blocks(denoiser, graph, schedule, tokens, given, 8, order=order, generator=generator,
                                **options)  # fmt: skip
    assert torch.equal(x[:, :PROMPT], tokens[:, :PROMPT]) and (x < NUM_TOKENS).all()
    return x, calls


DECODES = {
    "confidence": ({"order": "confidence", "tokens_per_step": 1, "greedy": True}, {}),
    "margin-drawn": ({"order": "margin", "tokens_per_step": 1, "greedy": False}, {}),
    "threshold": ({"order": "confidence", "tokens_per_step": 1, "threshold": 0.4}, {}),
    # the sampler: rows whose block did not change skip the network (KVCache.select of the others)
    "analytic": (None, {"cache": True}),
}


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("decode_name", sorted(DECODES))
def test_every_cached_call_is_the_uncached_network(arch, decode_name):
    order, options = DECODES[decode_name]
    network = random_network(arch)
    cached_outputs, uncached_outputs = [], []
    with torch.no_grad():
        cached, calls = decode(recording(network, cached_outputs), order, **options)
    uncached, reference_calls = decode(recording(Uncached(random_network(arch)), uncached_outputs), order, **options)
    assert torch.equal(cached, uncached)
    assert calls == reference_calls == len(cached_outputs) == len(uncached_outputs)
    if order is not None:  # one token per call: 2 in the prompt's block, then 3 in each of the 2 blocks after it
        assert calls >= 3 if order.get("threshold") else calls == 2 + 3 + 3
    for index, (a, b) in enumerate(zip(cached_outputs, uncached_outputs, strict=True)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10, msg=f"call {index}")
