"""Block diffusion sampling (BD3-LM; Arriola et al., ICLR 2025): blocks left to right, each by the reverse
absorbing chain, every position of the block in parallel, against a KV cache of the finished blocks.

The denoiser contract (``scorediff.model.BlockDiffusionTransformer`` fits it): ``denoiser.config.block_size``;
``denoiser.new_cache(batch_size, max_len, device=...)`` gives a cache with ``select(rows, room)``;
``denoiser.block_log_probs(x_t, cache, label, clean)`` is ``log p(x_0 | x_t, cached blocks)`` (B, T, V) for the
block ``x_t`` (B, T) after the cached ones, leaving the cache as it was except that the finished tokens ``clean``
(B, C), given with a block's first call, are appended before it (so finishing a block costs no extra call).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ..errors import InputError
from ..graphs import Graph
from ..schedules import NoiseSchedule
from .cache import TimeIndependentScore
from .guidance import guide_log_probs
from .orders import decode_in_order, tokens_per_call
from .sampler import sample


@torch.inference_mode()
def sample_blocks(
    denoiser,
    graph: Graph,
    schedule: NoiseSchedule,
    tokens: Tensor,
    given: Tensor,
    steps: int,
    predictor: Literal["analytic", "euler", "first_hitting"] = "analytic",
    *,
    cache: bool = True,
    label: int | None = None,
    guidance: float = 0.0,
    generator: torch.Generator | None = None,
    order: dict | None = None,
    **options,
) -> tuple[Tensor, int, int]:
    """Fill the positions of ``tokens`` where ``given`` is False, one block at a time.

    Each block is sampled by ``scorediff.sample`` with ``steps`` steps (the predictor, temperature, top-p and
    greedy tail of ``options`` act as there) given the finished blocks, its given tokens clamped. Given tokens
    must form a prefix (a block sees only the blocks before it); a block that is all given is only cached.
    With the absorbing graph and an exact denoiser this samples the model's distribution exactly in the limit
    of many steps (and exactly with ``predictor="first_hitting"``).

    With ``order`` (the keywords of ``decode_in_order`` but ``given`` and ``generator``; ``tokens_per_step`` None
    spreads the block's masks over ``steps`` calls), each block is instead decoded in that order: the positions
    of the block the denoiser is surest of first (not a sampler of the model's law).

    Args:
        denoiser: a block diffusion network (see the module docstring).
        graph (Graph): the absorbing graph it was trained with; schedule (NoiseSchedule): its schedule.
        tokens (Tensor): int64 (B, L); values where ``given`` is False are ignored.
        given (Tensor): bool (B, L), True on a prefix of each row.
        steps (int): sampler steps per block.
        predictor (str): ``"analytic"``, ``"euler"`` or ``"first_hitting"``.
        cache (bool): skip the network for sequences whose block did not change since the last step.
        label (int | None): a conditional model's class; guidance (float): classifier-free guidance weight.
        generator (torch.Generator | None): source of all randomness.

    Returns:
        tuple: the tokens, int64 (B, L); network calls; sampler steps.
    """
    batch_size, length = tokens.shape
    block_size = denoiser.config.block_size
    labels = _labels(label, guidance, batch_size, tokens.device)
    kv = denoiser.new_cache(batch_size * (2 if guidance else 1), length, device=tokens.device)
    x, nfe, step_count = tokens.clone(), 0, 0
    cached = 0  # tokens before this are in the KV cache; finished ones after it ride along with the next call
    for start in range(0, length, block_size):
        block = slice(start, min(start + block_size, length))
        if not bool(given[:, block].all()):
            denoise = _BlockDenoiser(denoiser, kv, labels, guidance, x[:, cached:start])
            score = TimeIndependentScore(denoise, cache, pass_rows=True, mask_id=graph.mask_id)
            if order is None:
                shape = (batch_size, block.stop - block.start)
                x[:, block], stats = sample(
                    score, graph, schedule, shape, steps, predictor, condition=(x[:, block], given[:, block]),
                    generator=generator, return_stats=True, **options,
                )  # fmt: skip
                calls, taken = stats.nfe, stats.steps
            else:
                x[:, block], calls = _decode_block(
                    denoise, graph, x[:, block], given[:, block], steps, order, generator
                )
                taken = calls
            nfe, step_count = nfe + calls, step_count + taken
            cached = start
    return x, nfe, step_count


def _decode_block(denoise, graph: Graph, tokens: Tensor, given: Tensor, steps: int, order: dict, generator):
    """One block decoded in an adaptive order (``decode_in_order``); the network calls."""
    every_row = torch.ones(tokens.shape[0], dtype=torch.bool, device=tokens.device)
    x = torch.where(given, tokens, graph.mask_id)
    settings = {**order, "tokens_per_step": tokens_per_call(order.get("tokens_per_step"), given, steps)}
    return decode_in_order(
        lambda x_t: denoise(x_t, every_row),
        x,
        graph.mask_id,
        graph.num_tokens,
        given=given,
        generator=generator,
        **settings,
    )


def _labels(label: int | None, guidance: float, batch_size: int, device) -> Tensor | None:
    """The label of every cached row: the class, then (guided) the null label (-1) for a second copy."""
    if label is None:
        if guidance:
            raise InputError("guidance needs a label")
        return None
    labels = torch.full((batch_size,), int(label), dtype=torch.int64, device=device)
    return torch.cat([labels, torch.full_like(labels, -1)]) if guidance else labels


class _BlockDenoiser:
    """``(x_t, rows) -> log p(x_0 | x_t, cached blocks)`` for the rows given of the block after the cached ones,
    guided when asked (the conditional and the null-label rows in one call). Its first call, on every row,
    also appends the ``finished`` tokens to the cache, so finishing a block costs no call of its own."""

    def __init__(self, denoiser, kv, labels: Tensor | None, guidance: float, finished: Tensor):
        self.denoiser, self.kv, self.labels, self.guidance = denoiser, kv, labels, guidance
        self.finished = finished if finished.shape[1] else None

    def __call__(self, x_t: Tensor, rows: Tensor) -> Tensor:
        clean = self.finished
        if self.guidance:
            x_t, rows = torch.cat([x_t, x_t]), torch.cat([rows, rows])
            clean = None if clean is None else torch.cat([clean, clean])
        if clean is not None and not bool(rows.all()):
            raise RuntimeError("the first call of a block must cover every row")  # TimeIndependentScore's does
        kept = self.kv if bool(rows.all()) else self.kv.select(rows, x_t.shape[1])
        labels = None if self.labels is None else self.labels[rows]
        out = self.denoiser.block_log_probs(x_t, kept, labels, clean=clean)
        self.finished = None
        if not self.guidance:
            return out
        half = len(out) // 2
        return guide_log_probs(out[:half], out[half:], self.guidance)
