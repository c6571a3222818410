"""Autoregressive models in the Hugging Face transformers layout (``config.json`` + ``model.safetensors``):
LLaMA (``model_type: llama``, SmolLM2 is one with tied embeddings), Qwen2 (q/k/v biases) and Qwen3 (q/k RMSNorm),
read onto scorediff's llama backbone as autoregressive models (``llama_layout.causal_model``).

Only what the backbone computes is accepted: SiLU gates, plain rotary positions (no ``rope_scaling``), no sliding
window, no biases beyond Qwen2's; anything else is refused in one line rather than converted into another model.
"""

from __future__ import annotations

from torch import Tensor

from ..checkpoint import CheckpointError
from ..errors import InputError
from .llama_layout import LlamaShape, causal_model, flag, number, rename_hf, stated_id, whole

NAME = "LLaMA/Qwen2/Qwen3 (transformers)"
MODEL_TYPES = ("llama", "qwen2", "qwen3")


def matches(config: dict) -> bool:
    return config.get("model_type") in MODEL_TYPES


def rope_theta(config: dict, layout: str) -> float:
    """The rotary base, from ``rope_theta`` (transformers 4) or ``rope_parameters`` (transformers 5); a scaled
    rotary (LLaMA 3.1's ``llama3``, YaRN, ...) is refused."""
    key = next((key for key in ("rope_parameters", "rope_scaling") if config.get(key)), None)
    parameters = config[key] if key else {}
    if not isinstance(parameters, dict):  # read_published names the folder
        raise InputError(f"{key} must be a JSON object; got {parameters!r}")
    kind = parameters.get("rope_type", parameters.get("type", "default"))
    if kind != "default":
        raise CheckpointError(f"this {layout} model uses {kind!r} rotary scaling; scorediff converts plain rotary only")
    return number(parameters if parameters.get("rope_theta") is not None else config, "rope_theta", 10000.0)


def shape(config: dict, layout: str = NAME) -> LlamaShape:
    """The architecture a transformers ``config.json`` of LLaMA, Qwen2 or Qwen3 (or Dream, Qwen2's twin) states."""
    if config.get("hidden_act", "silu") != "silu":
        raise CheckpointError(f"this {layout} model's MLP uses {config['hidden_act']!r}; scorediff's uses silu")
    if flag(config, "use_sliding_window") or flag(config, "mlp_bias"):
        raise CheckpointError(f"this {layout} model uses sliding-window attention or MLP biases; scorediff has neither")
    kind = config.get("model_type")
    if kind in ("llama", "qwen3") and flag(config, "attention_bias"):
        raise CheckpointError(f"this {kind} model has attention biases, which scorediff's llama backbone lacks")
    hidden, heads = whole(config, "hidden_size"), whole(config, "num_attention_heads")
    return LlamaShape(
        vocab_size=whole(config, "vocab_size"),
        hidden_size=hidden,
        n_blocks=whole(config, "num_hidden_layers"),
        n_heads=heads,
        n_kv_heads=whole(config, "num_key_value_heads", heads),
        head_dim=whole(config, "head_dim", hidden // heads),
        intermediate_size=whole(config, "intermediate_size"),
        rope_theta=rope_theta(config, layout),
        norm_eps=number(config, "rms_norm_eps", 1e-6),
        tie_embeddings=flag(config, "tie_word_embeddings"),  # every class defaults to untied
        seq_len=whole(config, "max_position_embeddings", 2048),
        qkv_bias=kind in ("qwen2", "Dream"),
        qk_norm=kind == "qwen3",
    )


def bos_token(config: dict) -> int:
    """The token the model starts a text with: ``bos_token_id``, else ``eos_token_id`` (Qwen's configs leave the
    BOS unset and separate texts by the end token)."""
    token = stated_id(config, "bos_token_id", None)
    if token is None:
        ends = config.get("eos_token_id")
        if isinstance(ends, list):  # LLaMA 3 lists its end tokens; the first stands for them
            config = {"eos_token_id": ends[0] if ends else None}
        token = stated_id(config, "eos_token_id", None)
    if token is None:
        raise CheckpointError("config.json states neither bos_token_id nor eos_token_id, the token a text starts after")
    return token


def convert(config: dict, state: dict[str, Tensor]):
    if "lm_head.weight" not in state:  # a tied model saved without its output copy, whatever config.json says
        config = {**config, "tie_word_embeddings": True}
    architecture = shape(config)
    return causal_model(architecture, rename_hf(state, architecture.tie_embeddings), bos_token(config), NAME)
