"""The causal transformer: it sees only the past, and its KV cache changes nothing but the cost."""

import pytest
import torch

from scorediff.model import CausalTransformer, ModelConfig, build_network

#: The llama twin with grouped-query attention, so that the cache holds two key/value heads for four queries.
ARCHS = {"dit": {"n_heads": 2}, "llama": {"arch": "llama", "n_heads": 4, "n_kv_heads": 2}}


def small_causal(arch: str = "dit") -> CausalTransformer:
    config = ModelConfig(vocab_size=8, hidden_size=32, n_blocks=2, seq_len=16, **ARCHS[arch])
    torch.manual_seed(0)
    model = build_network("autoregressive", config)
    assert isinstance(model, CausalTransformer)
    for parameter in model.parameters():  # large weights, so that a leak from the future would show
        torch.nn.init.normal_(parameter, std=0.3)
    return model.eval()


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_outputs_depend_only_on_earlier_tokens(arch):
    model = small_causal(arch)
    tokens = torch.randint(0, 7, (2, 16), generator=torch.Generator().manual_seed(0))
    changed = tokens.clone()
    changed[:, 9:] = (changed[:, 9:] + 1) % 7
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    a, b = a[..., :-1], b[..., :-1]  # leave out BOS, -inf in both
    torch.testing.assert_close(a[:, :9], b[:, :9], rtol=0, atol=1e-6)
    assert (a[:, 9:] - b[:, 9:]).abs().max() > 1e-2  # and later positions do see the change


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_log_probs_are_normalised_and_never_predict_bos(arch):
    model = small_causal(arch)
    with torch.no_grad():
        log_probs = model(torch.randint(0, 8, (3, 10), generator=torch.Generator().manual_seed(1)))
    assert log_probs.shape == (3, 10, 8) and log_probs.dtype == torch.float32
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(3, 10))
    assert torch.isneginf(log_probs[..., model.bos_id]).all()


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_kv_cache_reproduces_the_full_forward(arch):
    model = small_causal(arch)
    tokens = torch.randint(0, 8, (2, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(tokens)
        cache = model.new_cache(2, 12)
        pieces = [model(tokens[:, :5], cache)]  # a prefill, then one token at a time, then a chunk
        pieces += [model(tokens[:, i : i + 1], cache) for i in range(5, 9)]
        pieces.append(model(tokens[:, 9:], cache))
    assert cache.length == 12
    # float32 rounding of the same sums in another order
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=0, atol=1e-5)


def test_gpt2_style_initialisation_scales_residual_projections():
    model = CausalTransformer(ModelConfig(vocab_size=50, hidden_size=256, n_blocks=8, n_heads=4))
    projection = model.blocks[0].attn_out.weight.std().item()
    assert abs(projection - 0.02 / 4) < 0.02 / 4 * 0.05  # 0.02 / sqrt(2 * 8); 65k entries: 1% sampling error
    assert not any("adaLN" in name or "sigma_map" in name for name, _ in model.named_parameters())
