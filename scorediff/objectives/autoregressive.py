"""The autoregressive baseline: next-token cross-entropy, exact likelihood, left-to-right sampling."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from ..checkpoint import Header
from ..errors import InputError
from ..model import CausalTransformer, ModelConfig, build_network
from ..sampling.autoregressive import sample_autoregressive
from ..sampling.options import SamplingOptions
from .base import Objective, WindowFiller, check_scored


class AutoregressiveObjective(Objective):
    """``-log p(x_0) = -sum_i log p(x_i | x_<i)``, with a begin-of-sequence token ``bos_id = num_tokens``.

    Training minimises exactly the quantity ``nll`` reports, so the loss is the exact negative log-likelihood
    of the training windows, nats per sequence.

    Args:
        num_tokens (int): data tokens; the network's vocabulary is ``num_tokens + 1`` (the BOS).
    """

    name = "autoregressive"
    exact = True
    described = "an autoregressive model"
    option_fields = frozenset({"temperature", "top_p", "greedy", "cache", "bf16", "block"})
    left_to_right = True

    def __init__(self, num_tokens: int):
        if int(num_tokens) < 1:
            raise InputError(f"num_tokens must be >= 1; got {num_tokens}")
        self.num_tokens = int(num_tokens)
        self.vocab_size = self.num_tokens + 1
        self.bos_id = self.num_tokens

    def header(self) -> Header:
        return Header(self.name, None, self.num_tokens, None, self.vocab_size)

    def build_model(self, config: ModelConfig) -> CausalTransformer:
        config = dataclasses.replace(config, vocab_size=self.vocab_size, scale_by_sigma=False, time_conditioning=False)
        return build_network("autoregressive", config)

    def draw(
        self, x_0: Tensor, generator: torch.Generator, label: Tensor | None = None, given: Tensor | None = None
    ) -> dict[str, Tensor]:
        """No noise to draw: the batch itself, and ``given`` (B, L) bool, the prompt positions not scored."""
        if label is not None:
            raise InputError("the autoregressive objective has no class-conditional model; the data are labelled")
        return {"x_0": x_0} if given is None else {"x_0": x_0, "given": given}

    def loss(self, network: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        return self._chain_rule(network, batch["x_0"], batch.get("given"))

    @torch.no_grad()
    def nll(
        self,
        model: nn.Module,
        x_0: Tensor,
        generator: torch.Generator | None = None,
        num_t: int = 32,
        given: Tensor | None = None,
    ) -> Tensor:
        """``-log p(x_0)``, nats (B,); with ``given`` (B, L) bool, ``-log p(x_0[~given] | x_0[given])`` when the given
        positions come first (a prompt), the sum of the other positions' terms."""
        check_scored(x_0, self.num_tokens, model, given)
        return self._chain_rule(model, x_0, given).double()

    def _chain_rule(self, network: nn.Module, x_0: Tensor, given: Tensor | None = None) -> Tensor:
        """``-sum_i log p(x_i | BOS, x_<i)`` in one causal pass over ``BOS, x_0[:-1]``, float32 (B,); the terms of
        ``given`` positions are left out."""
        bos = torch.full_like(x_0[:, :1], self.bos_id)
        log_probs = network(torch.cat([bos, x_0[:, :-1]], dim=1))  # (B, L, V)
        terms = log_probs.gather(-1, x_0[..., None]).squeeze(-1)  # (B, L)
        return -(terms if given is None else torch.where(given, 0.0, terms)).sum(-1)

    def window_filler(self, model, options: SamplingOptions, generator, device) -> WindowFiller:
        """Each window left to right (``greedy``: the most probable token at each position; ``cache``: keys and
        values kept between positions). Given tokens after the leading prefix are written in as their positions
        come: the model conditions on them from there on, never before."""
        keywords = {
            "temperature": options.temperature, "top_p": options.top_p, "greedy": bool(options.greedy),
            "use_cache": options.cache,
        }  # fmt: skip

        def fill(window: Tensor, known: Tensor) -> tuple[Tensor, int, int]:
            prefix = int(known.long().cumprod(1).sum(1).min())  # given at the start of every row
            prompt = window[:, :prefix] if prefix else None
            fixed = (window, known) if known[:, prefix:].any() else None
            x = sample_autoregressive(
                model, window.shape, prompt=prompt, fixed=fixed, generator=generator, device=device, **keywords
            )
            return x, window.shape[1] - prefix, window.shape[1] - prefix

        return WindowFiller(fill)
