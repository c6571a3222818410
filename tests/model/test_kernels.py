"""The faster paths the model takes on CPUs compute the same functions as the library kernels they replace."""

import pytest
import torch
import torch.nn.functional as F

from scorediff.model.attention import causal_mask, explicit_attention
from scorediff.model.layers import TanhGELU


def test_sigmoid_form_of_tanh_gelu_is_the_same_function():
    x = torch.linspace(-12, 12, 10001, dtype=torch.float64)
    torch.testing.assert_close(TanhGELU.sigmoid_form(x), F.gelu(x, approximate="tanh"), rtol=0, atol=1e-14)


@pytest.mark.parametrize("mask", [None, "causal", "cached"])
def test_explicit_attention_matches_sdpa(mask):
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 9, 8, dtype=torch.float64, generator=generator) for _ in range(3))
    if mask == "cached":  # 4 new queries after 5 cached positions
        q, allowed = q[:, :, 5:], causal_mask(4, 5)
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        got = explicit_attention(q, k, v, allowed, 0.0)
    else:
        expected = F.scaled_dot_product_attention(q, k, v, is_causal=mask == "causal")
        got = explicit_attention(q, k, v, mask, 0.0)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)  # its softmax runs in float32


def test_bf16_attention_on_cpu_tracks_float32():
    generator = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(4, 2, 128, 32, generator=generator) for _ in range(3))
    reference = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    got = explicit_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), "causal", 0.0).float()
    assert (got - reference).abs().max() < 0.05  # bf16 keeps 8 bits of mantissa: relative 2^-8 per product
    assert torch.nn.functional.cosine_similarity(got.flatten(), reference.flatten(), dim=0) > 0.9999
