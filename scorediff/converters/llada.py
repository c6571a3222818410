"""LLaDA (Nie et al. 2025; the Hub's ``GSAI-ML/LLaDA-8B-Base``/``-Instruct`` and ``LLaDA-1.5``): a masked diffusion
model trained from scratch on a LLaMA-shaped network with bidirectional attention and no time input, in OLMo's
names (``model_type: llada``). Read as scorediff's time-independent absorbing model on the llama backbone, its mask
(126336 in the 8B models) moved to the last id (``llama_layout.masked_model``).

Names: ``model.transformer.wte`` (embedding), ``blocks.i.{attn_norm, q_proj, k_proj, v_proj, attn_out, ff_norm,
ff_proj, up_proj, ff_out}``, ``ln_f``, ``ff_out`` (the untied output). ``ff_proj`` is the SwiGLU gate:
``ff_out(silu(ff_proj x) * up_proj x)``. Only the configuration the released models use is converted (LLaMA
blocks, RMSNorm without biases, rotary, SiLU, unscaled logits); anything else is refused in one line.
"""

from __future__ import annotations

from torch import Tensor

from ..checkpoint import CheckpointError
from .llama_layout import LlamaShape, flag, masked_model, number, stated_id, whole

NAME = "LLaDA"
MASK_ID = 126336  # the released models' mask token, when config.json does not state it
BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "q_proj": "self_attn.q_proj",
    "k_proj": "self_attn.k_proj",
    "v_proj": "self_attn.v_proj",
    "attn_out": "self_attn.o_proj",
    "ff_norm": "post_attention_layernorm",
    "ff_proj": "mlp.gate_proj",
    "up_proj": "mlp.up_proj",
    "ff_out": "mlp.down_proj",
}
TOP_NAMES = {"wte": "vocab_embed", "ln_f": "output_layer.norm", "ff_out": "output_layer.linear"}
#: The settings of the released models, which are what scorediff's llama backbone computes.
REQUIRED = {
    "block_type": "llama",
    "layer_norm_type": "rms",
    "activation_type": "silu",
    "rope": True,
    "alibi": False,
    "include_bias": False,
    "attention_layer_norm": False,
    "scale_logits": False,
    "input_emb_norm": False,
    "block_group_size": 1,
}


def matches(config: dict) -> bool:
    return config.get("model_type") == "llada"


def shape(config: dict) -> LlamaShape:
    for key, value in REQUIRED.items():
        if key in config and (type(config[key]) is not type(value) or config[key] != value):  # 1 == True
            raise CheckpointError(f"this LLaDA model sets {key}={config[key]!r}; scorediff converts {key}={value!r}")
    if flag(config, "bias_for_layer_norm"):
        raise CheckpointError("this LLaDA model has RMSNorm biases; scorediff converts LLaDA without them")
    hidden, heads = whole(config, "d_model"), whole(config, "n_heads")
    kv_heads = 1 if flag(config, "multi_query_attention") else whole(config, "n_kv_heads", heads)
    return LlamaShape(
        vocab_size=whole(config, "embedding_size", 0) or whole(config, "vocab_size"),
        hidden_size=hidden,
        n_blocks=whole(config, "n_layers"),
        n_heads=heads,
        n_kv_heads=kv_heads,
        head_dim=hidden // heads,
        intermediate_size=whole(config, "mlp_hidden_size", 0) or int(number(config, "mlp_ratio", 4) * hidden),
        rope_theta=number(config, "rope_theta", 10000.0),
        norm_eps=number(config, "rms_norm_eps", 1e-5),
        tie_embeddings=flag(config, "weight_tying"),
        seq_len=whole(config, "max_sequence_length", 4096),
        qkv_bias=flag(config, "include_qkv_bias"),
    )


def rename(name: str) -> str:
    """``model.transformer.blocks.3.ff_proj.weight`` -> ``blocks.3.mlp.gate_proj.weight``; unknown names kept."""
    parts = name.removeprefix("model.transformer.").split(".")
    if parts[0] == "blocks" and len(parts) == 4 and parts[2] in BLOCK_NAMES:
        return f"blocks.{parts[1]}.{BLOCK_NAMES[parts[2]]}.{parts[3]}"
    if len(parts) == 2 and parts[0] in TOP_NAMES:
        return f"{TOP_NAMES[parts[0]]}.{parts[1]}"
    return name


def mask_id(config: dict) -> int:
    return stated_id(config, "mask_token_id", MASK_ID)


def convert(config: dict, state: dict[str, Tensor]):
    return masked_model(shape(config), {rename(name): t for name, t in state.items()}, mask_id(config), NAME)
