"""Fast-dLLM's approximate prefix / dual KV cache: exact where nothing is stale, and how far it moves the output
where the kept keys and values are stale (measured on tiny random time-independent networks, float64)."""

import pytest
import torch

from scorediff import AbsorbingGraph, LogLinearSchedule
from scorediff.model import ModelConfig, build_network
from scorediff.objectives.diffusion import DiffusionObjective
from scorediff.sampling import approximate_cache
from scorediff.sampling.approximate_cache import decode_with_approximate_cache
from scorediff.sampling.options import OptionError, SamplingOptions
from scorediff.sampling.orders import decode_in_order

NUM_TOKENS, SEQ_LEN = 12, 32
MASK = NUM_TOKENS
#: and an AR-adapted llama (``model.shift``), whose output at a position is read from the state before it
ARCHS = {
    "dit": {},
    "llama": {"arch": "llama", "n_kv_heads": 1},
    "shifted": {"arch": "llama", "n_kv_heads": 1, "shift": True},
}
RULE = {"order": "confidence", "tokens_per_step": 2, "greedy": True}


def random_network(arch: str):
    """A time-independent absorbing network with weights large enough that every position sees the others."""
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=NUM_TOKENS + 1, hidden_size=32, cond_dim=16, n_blocks=2, n_heads=4, seq_len=SEQ_LEN,
        time_conditioning=False, scale_by_sigma=False, **ARCHS[arch],
    )  # fmt: skip
    network = build_network("diffusion", config, mask_id=MASK)
    for parameter in network.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    return network.double().eval()


def masked(batch_size: int = 4, prompt: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, NUM_TOKENS, (batch_size, SEQ_LEN), generator=generator)
    given = torch.zeros_like(tokens, dtype=torch.bool)
    given[:, :prompt] = True
    return torch.where(given, tokens, MASK), given


def exact_blocked(network, x, given, cache_block: int, calls: list):
    """The reference: the same blocks and order, every call the whole network on the whole sequence."""

    def log_probs(z):
        calls.append(z.shape[1])
        return network.clean_log_probs(z)

    for start in range(0, SEQ_LEN, cache_block):
        outside = torch.ones_like(given)
        outside[:, start : start + cache_block] = False
        x, _ = decode_in_order(log_probs, x, MASK, NUM_TOKENS, given=given | outside, **RULE)
    return x


def recorded(monkeypatch, network):
    """Each call's sequence and output, and the query length of every pass of the network."""
    seen, queries = [], []
    original = approximate_cache.decode_in_order
    window_log_probs = network.window_log_probs

    def record(log_probs_fn, x, *args, **keywords):
        def spy(z):
            out = log_probs_fn(z)
            seen.append((z.clone(), out[..., :NUM_TOKENS].log_softmax(-1)))
            return out

        return original(spy, x, *args, **keywords)

    def counted(x_t, cache, start=0, stop=None):
        queries.append((x_t.shape[1] if stop is None else stop) - start)
        return window_log_probs(x_t, cache, start, stop)

    monkeypatch.setattr(approximate_cache, "decode_in_order", record)
    monkeypatch.setattr(network, "window_log_probs", counted)
    return seen, queries


@torch.no_grad()
def committed_error(network, seen, final) -> float:
    """Mean |log p_cached - log p_exact| of each committed token, both read on the sequence it was committed from."""
    errors = []
    for index, (x, log_p) in enumerate(seen):
        after = seen[index + 1][0] if index + 1 < len(seen) else final
        picked = after != x
        exact = network.clean_log_probs(x)[..., :NUM_TOKENS].log_softmax(-1)
        token = after.clamp_max(NUM_TOKENS - 1)[..., None]  # the mask only where nothing was committed
        gap = (log_p.gather(-1, token) - exact.gather(-1, token)).squeeze(-1)[picked]
        errors.append(gap.abs())
    return float(torch.cat(errors).mean())


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("kind", ["prefix", "dual"])
def test_a_window_against_fresh_keys_is_the_whole_network(arch, kind):
    network = random_network(arch)
    x, _ = masked()
    x[:, :20] = torch.randint(0, NUM_TOKENS, (4, 20), generator=torch.Generator().manual_seed(2))
    cache = network.stale_cache(4, SEQ_LEN)
    whole = network.window_log_probs(x, cache)
    torch.testing.assert_close(whole, network.clean_log_probs(x), rtol=0, atol=1e-12)
    stop = SEQ_LEN if kind == "prefix" else 24
    window = network.window_log_probs(x, cache, 16, stop)
    torch.testing.assert_close(window, whole[:, 16:stop], rtol=0, atol=1e-12)


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("kind", ["prefix", "dual"])
def test_a_refresh_every_call_is_the_exact_decode(arch, kind, monkeypatch):
    network = random_network(arch)
    x, given = masked(prompt=3)
    exact_calls = []
    exact = exact_blocked(network, x, given, 1, exact_calls)
    seen, queries = recorded(monkeypatch, network)
    cached, calls, full = decode_with_approximate_cache(
        network, x, MASK, NUM_TOKENS, kind=kind, cache_block=1, given=given, **RULE
    )
    assert torch.equal(cached, exact)
    assert calls == full == len(exact_calls) == SEQ_LEN - 3 and queries == [SEQ_LEN] * calls


#: Measured here (float64, so any machine gives them to the tolerances below): the fraction of the 4 x 32 tokens that
#: differ from the exact decode in the same blocks of 8, and the mean |log p_cached - log p_exact| of the committed
#: tokens (each read on the sequence it was committed from).
MEASURED = {
    ("dit", "prefix"): (0.0, 0.004382), ("dit", "dual"): (0.0, 0.006936),
    ("llama", "prefix"): (0.1875, 0.02087), ("llama", "dual"): (0.1875, 0.02405),
    ("shifted", "prefix"): (0.15625, 0.03112), ("shifted", "dual"): (0.34375, 0.06057),
}  # fmt: skip


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("kind", ["prefix", "dual"])
def test_b_stale_keys_move_the_output_this_far_for_fewer_whole_passes(arch, kind, monkeypatch):
    network = random_network(arch)
    x, given = masked()
    exact_calls = []
    exact = exact_blocked(network, x, given, 8, exact_calls)
    seen, queries = recorded(monkeypatch, network)
    cached, calls, full = decode_with_approximate_cache(
        network, x, MASK, NUM_TOKENS, kind=kind, cache_block=8, given=given, **RULE
    )
    moved, error = MEASURED[arch, kind]
    assert float((cached != exact).double().mean()) == pytest.approx(moved, abs=1e-9)
    assert committed_error(network, seen, cached) == pytest.approx(error, rel=1e-3)
    assert error > 1e-4  # stale: the denoiser's output did move
    # 16 calls each (2 tokens a call); the exact decode runs all 32 positions in every one
    assert calls == len(exact_calls) == 16 and exact_calls == [SEQ_LEN] * 16 and full == 4
    whole = sum(length == SEQ_LEN for length in queries)
    # prefix: the first block has no prefix to reuse, so its 4 calls run everything; then one refresh per block
    assert whole == (4 + 3 if kind == "prefix" else 4)
    window = 8 if kind == "dual" else None
    assert all(length in (SEQ_LEN, window or length) for length in queries)


def objective():
    return DiffusionObjective(AbsorbingGraph(NUM_TOKENS), LogLinearSchedule(), time_conditioning=False)


def test_through_the_objective_the_dual_cache_decodes_as_the_function_does():
    network = random_network("llama")
    x, given = masked(prompt=5)
    tokens = torch.where(given, x, 0)
    options = SamplingOptions(**RULE, approximate_cache="dual", cache_block=8, bf16=False)
    result = objective().sample(network, (4, SEQ_LEN), options, condition=(tokens, given))
    direct, calls, _ = decode_with_approximate_cache(
        network, x, MASK, NUM_TOKENS, kind="dual", cache_block=8, given=given, **RULE
    )
    assert torch.equal(result.tokens, direct) and result.stats.nfe == calls == 14  # ceil(27 / 2) over 4 blocks
    assert torch.equal(result.tokens[:, :5], tokens[:, :5])


@pytest.mark.parametrize(
    ("keywords", "field"),
    [
        ({"approximate_cache": "prefix"}, "approximate_cache"),  # the random order samples the law: no blocks
        ({"approximate_cache": "full", "order": "confidence"}, "approximate_cache"),
        ({"approximate_cache": "dual", "order": "confidence", "cache_block": 0}, "cache_block"),
        ({"approximate_cache": "dual", "order": "confidence", "remask_rounds": 1}, "approximate_cache"),
        ({"approximate_cache": "dual", "order": "confidence", "label": 0}, "approximate_cache"),
    ],
)
def test_c_misuse_is_refused_naming_the_option(keywords, field):
    with pytest.raises(OptionError) as error:
        SamplingOptions(**keywords)
    assert error.value.field == field


def test_c_a_time_conditioned_network_is_refused():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=NUM_TOKENS + 1, hidden_size=32, cond_dim=16, n_blocks=1, n_heads=4, seq_len=8)
    network = build_network("diffusion", config, mask_id=MASK)
    options = SamplingOptions(order="confidence", approximate_cache="prefix", bf16=False)
    diffusion = DiffusionObjective(AbsorbingGraph(NUM_TOKENS), LogLinearSchedule())
    with pytest.raises(OptionError, match="time-independent network"):
        diffusion.sample(network, (1, 8), options)
