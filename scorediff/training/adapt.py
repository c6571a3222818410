"""AR-to-diffusion adaptation (A2D): an autoregressive llama's weights given to a shifted masked- or block-diffusion
llama (``model.shift``; ``model.shifted_block`` for blocks), and, for masked diffusion, the attention annealed from
causal to full over the first steps.

Vocabulary layout. The AR network has ``N + 1`` rows, the ``N`` data tokens then its BOS (``bos_id = N``); the
shifted diffusion network has ``N + 2`` embedding rows, the data tokens, the mask (``N``) and its BOS (``N + 1``),
and ``N + 1`` output rows (no BOS output). The data rows and every block weight are copied, the BOS embedding goes
to the BOS row, and the mask, which the AR model never saw, gets the mean data-token embedding (an input of the
typical scale, carrying no token's identity) and a zero output row (the mask is never predicted: its logit is
dropped by the absorbing graph's score). With causal attention the adapted network then computes the AR model's
next-token log-probabilities exactly, ``logits`` at position ``i`` being the AR head's after ``[BOS] + x[:i]``.

Annealing (``train.attention_anneal_steps = A``): at step ``s < A`` query ``i`` sees keys up to
``i + ceil(L s / A)`` (step 0: causal, the AR model's own attention), then every key. DiffuLLaMA (Gong et al. 2025)
instead adds random keys with a probability growing from 0 to 1; the band here is deterministic, so a resumed run
repeats an uninterrupted one.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..config import ConfigError
from ..model.causal import CausalTransformer
from ..model.llama import LlamaCausalTransformer, LlamaTransformer

SUPPORTED = "an autoregressive llama (model.arch=llama) into a masked- or block-diffusion llama with model.shift=true"


def is_adaptation(source: nn.Module, target: nn.Module) -> bool:
    """Whether ``--init`` gives an autoregressive model to a diffusion network (else weights load as they are)."""
    return isinstance(source, CausalTransformer) and not isinstance(target, CausalTransformer)


def adapted_weights(source: nn.Module, target: nn.Module) -> dict[str, Tensor]:
    """The state dict of ``target`` (a shifted ``LlamaTransformer``) made from the AR network ``source``.

    Raises:
        ConfigError: one line naming what is supported, when the two cannot map (another arch, no shift, a
            conditioned or block network, other widths or another vocabulary).
    """
    if not isinstance(source, LlamaCausalTransformer) or not isinstance(target, LlamaTransformer):
        raise ConfigError(f"an autoregressive model adapts only as {SUPPORTED}")
    config = target.config
    if not config.shift:
        raise ConfigError(f"adapting an autoregressive model needs {SUPPORTED}; model.shift is false")
    num_tokens = source.config.vocab_size - 1
    if config.time_conditioning or config.num_labels or config.vocab_size != num_tokens + 1:
        raise ConfigError(
            f"train.init: the autoregressive model has {num_tokens} tokens; adapting it needs a time-independent "
            f"unlabelled absorbing network over them (model.vocab_size {config.vocab_size}, expected {num_tokens + 1})"
        )
    weights = dict(source.state_dict())
    embedding = weights["vocab_embed.weight"]  # (N + 1, D): data tokens, BOS
    data = embedding[:num_tokens]
    weights["vocab_embed.weight"] = torch.cat([data, data.mean(0, keepdim=True), embedding[num_tokens:]])
    if "output_layer.linear.weight" in weights:  # (N + 1, D): the BOS row, never an output, becomes the mask's
        linear = weights["output_layer.linear.weight"]
        weights["output_layer.linear.weight"] = torch.cat([linear[:num_tokens], linear.new_zeros(1, linear.shape[1])])
    return weights


def annealed_reach(step: int, anneal_steps: int, seq_len: int) -> int | None:
    """Keys past its own position that each query sees at ``step`` (module docstring); None: all of them."""
    if step >= anneal_steps:
        return None
    return math.ceil(seq_len * step / anneal_steps)


def check_annealable(model: nn.Module, anneal_steps: int) -> None:
    """Raise ``ConfigError`` when ``train.attention_anneal_steps`` is set for a network it cannot narrow."""
    if anneal_steps and not (isinstance(model, LlamaTransformer) and not model.config.block_size):
        raise ConfigError(
            "train.attention_anneal_steps applies to a masked-diffusion llama (model.arch=llama, block_size=0)"
        )


def unfinished_anneal_warning(max_steps: int, anneal_steps: int) -> str | None:
    """One line for a run that ends (``train.max_steps``) before its attention is full: it is sampled and scored
    with full attention, which it would never have trained with (None when the annealing ends in time)."""
    if not anneal_steps or anneal_steps < max_steps:
        return None
    return (
        f"warning: train.attention_anneal_steps={anneal_steps} reaches full attention only after train.max_steps="
        f"{max_steps}, so this run never trains with the full attention it is sampled with; set it below max_steps"
    )


def anneal_attention(model: nn.Module, step: int, anneal_steps: int, seq_len: int) -> None:
    """Set the attention of ``model`` for ``step`` (nothing when annealing is off)."""
    if anneal_steps and step <= anneal_steps:  # the step after the last narrowed one restores full attention
        model.set_attention_reach(annealed_reach(step, anneal_steps, seq_len))
