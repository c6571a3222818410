"""The LLaMA-style backbone against a from-scratch float64 reference: its layers (RMSNorm, SwiGLU, the rotary map
in HF LLaMA's split-halves convention), a whole causal network with grouped-query attention, q/k/v biases, q/k
norms and tied embeddings, and grouped-query attention against explicitly repeated heads."""

import dataclasses
import math

import pytest
import torch

from scorediff import LogLinearSchedule, UniformGraph, elbo
from scorediff.config import ConfigError, config_from_dict
from scorediff.model import LlamaCausalTransformer, ModelConfig, build_network
from scorediff.model.layers import RMSNorm, RotaryTables, SwiGLU, apply_rotary

QWEN_LIKE = dict(
    arch="llama", vocab_size=9, hidden_size=24, n_blocks=2, n_heads=4, n_kv_heads=2, head_dim=8, seq_len=12,
    intermediate_size=20, rope_theta=500.0, norm_eps=1e-5, qkv_bias=True, qk_norm=True, tie_embeddings=True,
    time_conditioning=False, scale_by_sigma=False,
)  # fmt: skip


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    for parameter in model.parameters():  # norms and biases too, so that each one matters
        torch.nn.init.normal_(parameter, std=0.3)
    return model.double().eval()


def test_rms_norm_and_swiglu_against_their_definitions():
    x = torch.randn(3, 5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    norm = randomised(RMSNorm(8, eps=1e-5))
    expected = x / torch.sqrt((x * x).sum(-1, keepdim=True) / 8 + 1e-5) * norm.weight
    torch.testing.assert_close(norm(x), expected, rtol=1e-12, atol=1e-12)
    mlp = randomised(SwiGLU(8, 6))
    gate = x @ mlp.gate_proj.weight.T
    expected = (gate / (1 + torch.exp(-gate)) * (x @ mlp.up_proj.weight.T)) @ mlp.down_proj.weight.T
    torch.testing.assert_close(mlp(x), expected, rtol=1e-12, atol=1e-12)


def reference_rotary(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """HF LLaMA's convention as complex numbers: dimension j pairs with j + K/2, turned by p base^(-2j/K). The
    angles' cosines and sines are float32, as HF computes them; the rotation is float64."""
    half = x.shape[-1] // 2
    inv_freq = 1.0 / base ** (torch.arange(0, x.shape[-1], 2, dtype=torch.float32) / x.shape[-1])
    angles = positions[:, None].float() * inv_freq  # (L, K / 2)
    turn = torch.complex(angles.cos().double(), angles.sin().double())
    turned = torch.complex(x[..., :half], x[..., half:]) * turn
    return torch.cat([turned.real, turned.imag], dim=-1)


@pytest.mark.parametrize("start", [0, 5, 40])  # 40: past the tables, computed on the spot
def test_rotary_is_hf_llamas_split_halves_rotation(start):
    x = torch.randn(2, 3, 4, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    cos, sin = RotaryTables(8, 16, base=500.0)(4, start)
    expected = reference_rotary(x, torch.arange(start, start + 4), 500.0)
    torch.testing.assert_close(apply_rotary(x, cos.double(), sin.double()), expected, rtol=0, atol=1e-12)


def project(w: dict, h: torch.Tensor, prefix: str, head: int, size: int) -> torch.Tensor:
    """One head's rows of a biased query, key or value map (``prefix``: ``blocks.i.`` and q, k or v)."""
    block, name = prefix[:-1], prefix[-1]
    rows = slice(head * size, (head + 1) * size)
    return h @ w[f"{block}self_attn.{name}_proj.weight"][rows].T + w[f"{block}self_attn.{name}_proj.bias"][rows]


def reference_causal_log_probs(model: LlamaCausalTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """The whole network written out in float64, one head at a time, from its state dict."""
    w, config = model.state_dict(), model.config
    heads, groups, size = config.n_heads, config.kv_heads, config.head_size

    def norm(x, weight):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + config.norm_eps) * weight

    x = w["vocab_embed.weight"][tokens]  # (B, T, D)
    positions = torch.arange(tokens.shape[1])
    future = positions[None, :] > positions[:, None]
    for i in range(config.n_blocks):
        p = f"blocks.{i}."
        h = norm(x, w[p + "input_layernorm.weight"])
        outputs = []
        for head in range(heads):
            group = head // (heads // groups)  # consecutive query heads share a key/value head
            q = norm(project(w, h, p + "q", head, size), w[p + "self_attn.q_norm.weight"])
            k = norm(project(w, h, p + "k", group, size), w[p + "self_attn.k_norm.weight"])
            q, k = reference_rotary(q, positions, 500.0), reference_rotary(k, positions, 500.0)
            scores = (q @ k.transpose(-1, -2) / math.sqrt(size)).masked_fill(future, -math.inf)
            outputs.append(scores.softmax(-1) @ project(w, h, p + "v", group, size))
        x = x + torch.cat(outputs, dim=-1) @ w[p + "self_attn.o_proj.weight"].T
        h = norm(x, w[p + "post_attention_layernorm.weight"])
        gate, up = h @ w[p + "mlp.gate_proj.weight"].T, h @ w[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
    logits = norm(x, w["output_layer.norm.weight"]) @ w["vocab_embed.weight"].T  # tied
    logits[..., config.vocab_size - 1] = -math.inf  # BOS never follows
    return logits.log_softmax(-1)


def test_a_qwen_shaped_causal_network_matches_the_written_out_reference():
    model = randomised(build_network("autoregressive", ModelConfig(**QWEN_LIKE)))
    assert "output_layer.linear.weight" not in model.state_dict()  # tied: the embedding is the one copy
    tokens = torch.randint(0, 9, (2, 7), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = reference_causal_log_probs(model, tokens).float()  # the contract's float32 log-probabilities
        torch.testing.assert_close(model(tokens), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ["diffusion", "autoregressive"])
def test_one_key_value_head_equals_it_repeated_for_every_query_head(kind):
    config = ModelConfig(**{**QWEN_LIKE, "n_kv_heads": 1, "tie_embeddings": False, "time_conditioning": True})
    shared = randomised(build_network(kind, config, mask_id=8))
    repeated = build_network(kind, dataclasses.replace(config, n_kv_heads=4), mask_id=8).double().eval()
    state = shared.state_dict()
    for key, value in state.items():
        if any(f"{name}_proj" in key for name in "kv"):
            state[key] = value.repeat(4, *([1] * (value.dim() - 1)))  # the one head's rows, once per query head
    repeated.load_state_dict(state)
    tokens = torch.randint(0, 8, (2, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        args = (tokens,) if kind == "autoregressive" else (tokens, torch.tensor([0.3, 2.0], dtype=torch.float64))
        torch.testing.assert_close(shared(*args), repeated(*args), rtol=0, atol=1e-12)
    assert shared.num_parameters() < repeated.num_parameters()


def test_a_conditioned_network_starts_as_the_plain_one():
    # zero modulation is the identity (around one), so an AR model's weights keep their function when conditioned
    config = ModelConfig(**{**QWEN_LIKE, "time_conditioning": True})
    conditioned = build_network("diffusion", config, mask_id=8).double().eval()
    plain = build_network("diffusion", dataclasses.replace(config, time_conditioning=False), 8).double().eval()
    missing = plain.load_state_dict(conditioned.state_dict(), strict=False)
    assert missing.missing_keys == [] and all("adaLN" in k or "sigma_map" in k for k in missing.unexpected_keys)
    tokens = torch.randint(0, 9, (2, 12), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        a = conditioned.logits(tokens, torch.tensor([0.1, 3.0], dtype=torch.float64))
        torch.testing.assert_close(a, plain.logits(tokens, None), rtol=0, atol=1e-12)


def test_bad_llama_configs_are_one_line_errors():
    base = {"model": {"arch": "llama", "n_heads": 4}}
    with pytest.raises(ConfigError, match=r"^model.n_kv_heads must divide n_heads = 4; got 3$"):
        config_from_dict({"model": {**base["model"], "n_kv_heads": 3}})
    with pytest.raises(ConfigError, match=r"^model.arch must be one of \['dit', 'llama'\]; got 'mamba'$"):
        config_from_dict({"model": {"arch": "mamba"}})
    with pytest.raises(ConfigError, match=r"^model.n_kv_heads applies to arch=llama; got 2 with arch=dit$"):
        config_from_dict({"model": {"n_kv_heads": 2}})
    with pytest.raises(ConfigError, match="^model.norm_bias applies to arch=dit; a llama's RMSNorms have no bias$"):
        config_from_dict({"model": {**base["model"], "norm_bias": True}})
    with pytest.raises(ConfigError, match="^model.rope_theta must be > 0; got -1.0$"):
        config_from_dict({"model": {**base["model"], "rope_theta": -1}})
    qwen3 = config_from_dict({"model": {**base["model"], "hidden_size": 24, "head_dim": 16}}).model
    assert (qwen3.head_size, qwen3.kv_heads) == (16, 4)  # Qwen3: heads wider than hidden_size / n_heads


def test_a_config_saved_before_arch_existed_is_a_dit():
    saved = {"model": {"hidden_size": 32, "n_heads": 2, "cond_dim": 16}}  # as an old config.json has it
    assert config_from_dict(saved).model.arch == "dit"


def test_a_time_conditioned_llama_serves_the_uniform_graph():
    graph = UniformGraph(8)
    config = ModelConfig(arch="llama", vocab_size=8, hidden_size=32, cond_dim=16, n_blocks=2, n_heads=2, seq_len=12,
                         scale_by_sigma=False)  # fmt: skip
    model = randomised(build_network("diffusion", config))  # no mask_id: the uniform graph has none
    x_t = torch.randint(0, 8, (2, 12), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        low, high = (model(x_t, torch.full((2,), s, dtype=torch.float64)) for s in (0.1, 2.0))
    assert (low.gather(-1, x_t[..., None]) == 0).all() and low.dtype == torch.float32
    assert (low - high).abs().max() > 1e-2  # the noise level reaches the network
    bound = elbo(model, graph, LogLinearSchedule(), x_t, num_t=2)
    assert bound.shape == (2,) and torch.isfinite(bound).all() and (bound > 0).all()
