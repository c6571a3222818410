"""How a diffusion model fills a window in an order it chooses: the exact decoder (``decode_in_order``) over its
denoiser, or Fast-dLLM's approximate cache. ``DiffusionObjective.window_filler`` picks one."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..sampling.approximate_cache import decode_with_approximate_cache
from ..sampling.options import OptionError, SamplingOptions
from ..sampling.orders import decode_in_order, tokens_per_call
from ..types import ScoreFn
from .base import WindowFiller

if TYPE_CHECKING:
    from .diffusion import DiffusionObjective


def order_filler(objective: DiffusionObjective, score_fn: ScoreFn, options: SamplingOptions, generator) -> WindowFiller:
    """Decode each window in the order ``options`` names (``decode_in_order``), the model's denoiser read from
    ``score_fn`` (``DiffusionObjective.denoiser``)."""
    if objective.graph.mask_id is None:
        raise OptionError("order", "needs the absorbing graph (masks to fill); this model is uniform")
    log_probs_fn = objective.denoiser(score_fn)

    def fill(tokens: Tensor, given: Tensor) -> tuple[Tensor, int, int, float]:
        x = torch.where(given, tokens, objective.graph.mask_id)
        keywords = options.order_keywords()
        keywords["tokens_per_step"] = tokens_per_call(options.tokens_per_step, given, options.steps)
        rows_before = getattr(score_fn, "rows_evaluated", None)  # a cached score skips finished sequences
        x, nfe = decode_in_order(
            log_probs_fn, x, objective.graph.mask_id, objective.num_tokens, given=given, generator=generator, **keywords
        )
        per_sequence = nfe if rows_before is None else (score_fn.rows_evaluated - rows_before) / len(x)
        return x, nfe, nfe, per_sequence

    return WindowFiller(fill)


def approximate_filler(objective: DiffusionObjective, model, options: SamplingOptions, generator) -> WindowFiller:
    """Decode in an order with Fast-dLLM's approximate cache (``scorediff.sampling.approximate_cache``)."""
    if objective.graph.mask_id is None or not getattr(model, "time_independent", False):
        raise OptionError("approximate_cache", "needs the absorbing graph and a time-independent network")

    def fill(tokens: Tensor, given: Tensor) -> tuple[Tensor, int, int, float]:
        keywords = options.order_keywords()
        del keywords["remask_rounds"], keywords["remask_tokens"]  # refused with the cache
        keywords["tokens_per_step"] = tokens_per_call(options.tokens_per_step, given, options.steps)
        x, nfe, _ = decode_with_approximate_cache(
            model, torch.where(given, tokens, objective.graph.mask_id), objective.graph.mask_id, objective.num_tokens,
            kind=options.approximate_cache, cache_block=options.cache_block, given=given, generator=generator,
            **keywords,
        )  # fmt: skip
        return x, nfe, nfe, nfe

    return WindowFiller(fill)
