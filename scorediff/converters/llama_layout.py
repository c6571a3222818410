"""What the LLaMA-family converters share: an architecture read into a llama ``ModelConfig``, Hugging Face LLaMA's
weight names mapped onto scorediff's llama backbone (``scorediff.model.llama``), and the one change each kind of
model needs in its vocabulary:

- an autoregressive model gets one more embedding row, ``num_tokens``, the BOS scorediff's autoregressive objective
  puts before every sequence: a copy of the model's own BOS embedding, so that scoring ``x`` computes what the
  original computes on ``[bos] + x``; its output logit is ``-inf`` (BOS never follows), the others are unchanged.
- a masked diffusion model has its mask token moved to the last id (scorediff's absorbing graph has
  ``mask_id == num_tokens``): the mask's rows of the embedding and output layer swap with the last rows, and the
  tokenizer's two ids swap with them (``swap_token_ids``).

The weights are checked strictly by name and shape; q/k/v and the MLP need no reshaping, since the backbone uses
HF's rotary convention (``rotate_half``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..checkpoint import CheckpointError
from ..data.hf_tokenizer import folder_specials
from ..data.tokenizers import HFTokenizer
from ..errors import InputError
from ..graphs import get_graph
from ..model import ModelConfig
from ..model.llama import LlamaCausalTransformer, LlamaTransformer
from ..objectives import AutoregressiveObjective, DiffusionObjective
from ..placement import empty_network
from ..schedules import get_schedule
from .weights import load_strict

HF_NAMES = (
    ("model.embed_tokens.", "vocab_embed."),
    ("model.layers.", "blocks."),
    ("model.norm.", "output_layer.norm."),
    ("lm_head.", "output_layer.linear."),
)


@dataclass(frozen=True)
class LlamaShape:
    """The architecture of a LLaMA-family network, in the terms every layout states it."""

    vocab_size: int
    hidden_size: int
    n_blocks: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    intermediate_size: int
    rope_theta: float
    norm_eps: float
    tie_embeddings: bool
    seq_len: int
    qkv_bias: bool = False
    qk_norm: bool = False

    def model_config(self, vocab_size: int) -> ModelConfig:
        """The llama ``ModelConfig`` of this shape with ``vocab_size`` rows, without time conditioning."""
        return ModelConfig(
            vocab_size=vocab_size, arch="llama", hidden_size=self.hidden_size, n_blocks=self.n_blocks,
            n_heads=self.n_heads, seq_len=self.seq_len, intermediate_size=self.intermediate_size,
            n_kv_heads=self.n_kv_heads, head_dim=self.head_dim, rope_theta=self.rope_theta, norm_eps=self.norm_eps,
            tie_embeddings=self.tie_embeddings, qkv_bias=self.qkv_bias, qk_norm=self.qk_norm,
            time_conditioning=False, scale_by_sigma=False,
        )  # fmt: skip


def flag(config: dict, key: str, default: bool = False) -> bool:
    """The JSON true or false at ``key`` of a ``config.json`` (``default`` when absent or null); any other value is
    refused (``read_published`` names the folder), since ``bool("false")`` is True."""
    value = config.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InputError(f"{key} must be true or false; got {value!r}")
    return value


def is_whole(value) -> bool:
    """Whether a JSON value is a whole number: an integer, or a float without a fraction (true and false are not)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def whole(config: dict, key: str, default: int | None = None) -> int:
    """The size at ``key`` of a ``config.json``: a whole number >= 1 (``int(32.7)`` would be 32, ``int("32")`` a
    text taken for a number). With a ``default``, an absent, null or zero value means the default (transformers
    reads ``num_key_value_heads: null`` and LLaDA ``n_kv_heads: 0`` so; false, "" or [] are refused, not read as
    absent); without one the key must be there."""
    value = config.get(key)
    if default is not None and (value is None or (is_whole(value) and value == 0)):
        return default
    if value is None:
        raise KeyError(key)  # read_published: "config.json lacks 'key'"
    if not is_whole(value) or value < 1:
        raise InputError(f"{key} must be a whole number >= 1; got {value!r}")
    return int(value)


def number(config: dict, key: str, default: float) -> float:
    """The real number at ``key`` of a ``config.json`` (``default`` when absent or null): a finite JSON number, not
    a text (``float("1e-5")`` would read one), true or false, or an integer past float's range; whether it is in
    range is ``ModelConfig``'s to say."""
    value = config.get(key)
    if value is None:
        return default
    finite = isinstance(value, int | float) and abs(value) <= sys.float_info.max  # False for NaN too
    if isinstance(value, bool) or not finite:
        raise InputError(f"{key} must be a finite number; got {value!r}")
    return float(value)


def stated_id(config: dict, key: str, default: int | None) -> int | None:
    """The token id at ``key`` of a ``config.json``: a whole number >= 0 (``int(1.5)`` would be 1, ``int(True)``
    1, ``int("90")`` a text taken for a number); ``default`` only when absent or null (id 0 is an id)."""
    value = config.get(key)
    if value is None:
        return default
    if not is_whole(value) or value < 0:
        raise InputError(f"{key} must be a token id, a whole number >= 0; got {value!r}")
    return int(value)


def rename_hf(state: dict[str, Tensor], tied: bool) -> dict[str, Tensor]:
    """HF LLaMA/Qwen names to the backbone's; a tied model's stored ``lm_head`` copy and rotary buffers dropped."""
    renamed = {}
    for name, tensor in state.items():
        if name.endswith("rotary_emb.inv_freq") or (tied and name == "lm_head.weight"):
            continue  # recomputed from rope_theta / the embedding itself
        for old, new in HF_NAMES:
            if name.startswith(old):
                name = new + name.removeprefix(old)
                break
        renamed[name] = tensor
    return renamed


def causal_model(
    shape: LlamaShape, state: dict[str, Tensor], bos_id: int, layout: str
) -> tuple[LlamaCausalTransformer, AutoregressiveObjective]:
    """An autoregressive model over the ``shape.vocab_size`` tokens, scorediff's BOS row added (module docstring).

    Args:
        state: the weights under the backbone's names (``rename_hf``).
        bos_id: the original model's begin-of-sequence token, whose embedding scorediff's BOS copies.
    """
    if not 0 <= bos_id < shape.vocab_size:
        raise CheckpointError(f"the {layout} model's BOS token {bos_id} is outside its {shape.vocab_size} tokens")
    state = dict(state)
    if "vocab_embed.weight" in state:  # (a missing weight is named by load_strict)
        embedding = state["vocab_embed.weight"]
        state["vocab_embed.weight"] = torch.cat([embedding, embedding[bos_id : bos_id + 1]])
    if not shape.tie_embeddings and "output_layer.linear.weight" in state:
        linear = state["output_layer.linear.weight"]
        state["output_layer.linear.weight"] = torch.cat([linear, linear.new_zeros(1, linear.shape[1])])
    model = empty_network(LlamaCausalTransformer, shape.model_config(shape.vocab_size + 1))
    load_strict(model, state, layout)
    return model.eval(), AutoregressiveObjective(shape.vocab_size)


def masked_model(
    shape: LlamaShape, state: dict[str, Tensor], mask_id: int, layout: str, network: type = LlamaTransformer
) -> tuple[LlamaTransformer, DiffusionObjective]:
    """A time-independent absorbing diffusion model whose mask, ``mask_id`` in the original, is the last id;
    ``network`` is the ``LlamaTransformer`` class to build (Dream's shifted one)."""
    last = shape.vocab_size - 1
    if not 0 <= mask_id <= last:
        raise CheckpointError(f"the {layout} model's mask token {mask_id} is outside its {shape.vocab_size} tokens")
    state = dict(state)
    names = ["vocab_embed.weight"] + ([] if shape.tie_embeddings else ["output_layer.linear.weight"])
    for name in names:
        if name in state and len(state[name]) == shape.vocab_size:  # other row counts: load_strict names them
            state[name] = state[name][swap_order(shape.vocab_size, mask_id)]
    graph = get_graph("absorbing", last)
    model = empty_network(network, shape.model_config(shape.vocab_size), graph.mask_id)
    load_strict(model, state, layout)
    objective = DiffusionObjective(graph, get_schedule("loglinear"), time_conditioning=False, mask_count=True)
    return model.eval(), objective


def swap_order(vocab_size: int, mask_id: int) -> Tensor:
    """int64 (V,): the permutation of ids that exchanges ``mask_id`` and the last id (its own inverse)."""
    order = torch.arange(vocab_size)
    order[[mask_id, vocab_size - 1]] = order[[vocab_size - 1, mask_id]]
    return order


def folder_tokenizer(folder: Path, swap: tuple[int, int] | None = None) -> HFTokenizer | None:
    """The folder's ``tokenizer.json`` (None without one), with the ids in ``swap`` exchanged when given."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        return None
    from tokenizers import Tokenizer

    try:
        spec = json.loads(path.read_text())
        if swap is not None:
            swap_token_ids(spec, *swap)
        tokenizer = Tokenizer.from_str(json.dumps(spec))
    except Exception as error:  # the tokenizers library raises its own exception type for a bad file
        raise CheckpointError(f"{path} cannot be used ({str(error).splitlines()[0][:160]})") from None
    try:
        eos, chat = folder_specials(tokenizer, folder, ("<|endoftext|>", "</s>", "<|eot_id|>"))
    except ValueError as error:  # an unreadable tokenizer_config.json
        raise CheckpointError(str(error)) from None
    return HFTokenizer(tokenizer, eos, chat)


def swap_token_ids(spec: dict, a: int, b: int) -> None:
    """Exchange ids ``a`` and ``b`` in a ``tokenizers`` JSON spec (its model's vocabulary and added tokens)."""
    other = {a: b, b: a}
    vocab = spec.get("model", {}).get("vocab")
    if isinstance(vocab, dict):
        spec["model"]["vocab"] = {token: other.get(i, i) for token, i in vocab.items()}
    for token in spec.get("added_tokens") or []:
        token["id"] = other.get(token["id"], token["id"])
