"""The llama backbone computes what transformers' own LLaMA, Qwen2 and Qwen3 classes compute from the same weights,
renamed only (the rotary convention and the key layout the module docstring states). The converters own the real
mapping; this pins the backbone's side of it. Skipped without transformers (the ``eval`` extra)."""

import pytest
import torch

from scorediff.model import ModelConfig, build_network

transformers = pytest.importorskip("transformers")

SHARED = dict(vocab_size=9, hidden_size=24, intermediate_size=20, rope_theta=500.0, tie_word_embeddings=True)
FAMILIES = {  # HF class and config, its extra fields, and ours
    "llama": ("LlamaForCausalLM", "LlamaConfig", {}, {}),
    "qwen2": ("Qwen2ForCausalLM", "Qwen2Config", {}, {"qkv_bias": True}),
    "qwen3": ("Qwen3ForCausalLM", "Qwen3Config", {"head_dim": 16}, {"qk_norm": True, "head_dim": 16}),
}


def renamed(state: dict) -> dict:
    """HF keys as the docstring maps them; the tied ``lm_head.weight`` is the embedding."""
    names = {"model.embed_tokens": "vocab_embed", "model.layers.": "blocks.", "model.norm": "output_layer.norm"}
    out = {}
    for key, value in state.items():
        for old, new in names.items():
            key = key.replace(old, new)
        if key != "lm_head.weight":
            out[key] = value
    return out


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_backbone_matches_the_hf_class_on_the_same_weights(family):
    model_class, config_class, hf_extra, our_extra = FAMILIES[family]
    hf_config = getattr(transformers, config_class)(
        **SHARED, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
        max_position_embeddings=32, **hf_extra,
    )  # fmt: skip
    torch.manual_seed(0)
    reference = getattr(transformers, model_class)(hf_config).double().eval()
    for parameter in reference.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    config = ModelConfig(
        arch="llama", vocab_size=9, hidden_size=24, intermediate_size=20, n_blocks=2, n_heads=4, n_kv_heads=2,
        rope_theta=500.0, norm_eps=1e-5, tie_embeddings=True, seq_len=16, time_conditioning=False,
        scale_by_sigma=False, **our_extra,
    )  # fmt: skip
    model = build_network("autoregressive", config).double().eval()
    model.load_state_dict(renamed(reference.state_dict()), strict=True)
    tokens = torch.randint(0, 9, (2, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(tokens).logits
        x = model.vocab_embed(tokens)
        cos, sin = model.rotary(tokens.shape[1])
        for block in model.blocks:
            x = block(x, None, cos, sin)
        logits = model.head(x)
    # float64 but for the rotary tables, float32 in both
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-6)
