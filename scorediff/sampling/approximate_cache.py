r"""Fast-dLLM's approximate KV cache for a full-attention masked diffusion model (Wu et al. 2025, arXiv 2505.22618).

A bidirectional denoiser recomputes every position at every call, though a call changes only the few positions it
commits. Fast-dLLM decodes the masks in blocks of ``cache_block`` positions, left to right (LLaDA's semi-autoregressive
blocks), and within a block reuses keys and values:

- the first call of a block runs the whole sequence, commits from its output, and keeps every position's keys and
  values (one full-sequence evaluation per block);
- each later call of the block runs only ``prefix``: the block and every position after it, attending to the kept
  keys and values of the positions before the block; or ``dual``: the block alone, attending to the kept keys and
  values before *and* after it.

**Approximate.** In a bidirectional network the keys and values of the prefix (and suffix) depend on the block's
tokens, which change at every call, so the kept ones are stale: the denoiser's output differs from the exact one and
the decoded tokens may too. The error is reset at each block's first call. With ``cache_block = 1`` every call is a
block's first call, nothing is stale, and the tokens equal those of the exact decode in the same blocks.

Measured on tiny random time-independent networks in float64 (``tests/sampling/test_approximate_cache.py``; 4 rows
of 32 masks, confidence order, 2 tokens a call, blocks of 8, against the exact decode in the same blocks): of the 16
calls the exact decode runs all 32 positions in each, ``dual`` in 4 and ``prefix`` in 7; the tokens that differ are
0% (DiT), 18.75% (llama) and 16-34% (a shifted, AR-adapted llama: prefix, dual), and the committed tokens'
log-probabilities are off by 0.004-0.007 (DiT), 0.021-0.024 (llama) and 0.031-0.061 (shifted) on average. A shifted
network's window pass starts one position early, at the token whose state predicts the window's first position.
"""

from __future__ import annotations

from typing import Literal, Protocol

import torch
from torch import Tensor

from .orders import decode_in_order


class WindowDenoiser(Protocol):
    """A time-independent network that can run a window of a sequence against cached keys and values
    (``SEDDTransformer`` and its llama twin)."""

    def stale_cache(self, batch_size: int, seq_len: int): ...

    def window_log_probs(self, x_t: Tensor, cache, start: int = 0, stop: int | None = None) -> Tensor: ...


class BlockDenoiser:
    """``x -> log p_theta(x_0 | x)`` (B, L, V) for the calls of one block ``[start, stop)``: the first call runs the
    whole sequence and fills the cache, each later one only its window (the rest of its output is the first call's,
    which the order never reads: it commits inside the block).

    Attributes:
        calls (int): network calls; full (int): those over the whole sequence.
    """

    def __init__(self, network: WindowDenoiser, kind: Literal["prefix", "dual"], start: int, stop: int):
        self.network, self.kind, self.start, self.stop = network, kind, start, stop
        self.cache, self.log_p = None, None
        self.calls = self.full = 0

    def __call__(self, x: Tensor) -> Tensor:
        self.calls += 1
        if self.cache is None:
            self.cache = self.network.stale_cache(x.shape[0], x.shape[1])
            self.log_p = self.network.window_log_probs(x, self.cache)  # (B, L, V)
            self.full += 1
            return self.log_p
        stop = self.stop if self.kind == "dual" else x.shape[1]
        self.log_p = self.log_p.clone()
        window = self.network.window_log_probs(x, self.cache, self.start, stop)  # (B, stop - start, V)
        self.log_p[:, self.start : stop] = window
        return self.log_p


def decode_with_approximate_cache(
    network: WindowDenoiser,
    x: Tensor,
    mask_id: int,
    num_tokens: int,
    *,
    kind: Literal["prefix", "dual"],
    cache_block: int,
    given: Tensor,
    **order_keywords,
) -> tuple[Tensor, int, int]:
    """Fill the masks of ``x`` block by block with Fast-dLLM's approximate cache (module docstring).

    Each block starts at the first position where some row has a mask to fill (so a prompt's end starts the first
    one) and spans ``cache_block`` positions; inside it ``decode_in_order`` commits as ``order_keywords`` say.

    Args:
        network (WindowDenoiser): the time-independent network.
        x (Tensor): int64, shape (B, L); ``mask_id`` where tokens are to be filled.
        mask_id (int): the mask state; num_tokens (int): the data tokens.
        kind (str): ``prefix`` or ``dual``.
        cache_block (int): positions per block (per cache refresh).
        given (Tensor): bool, shape (B, L), positions never changed.
        **order_keywords: ``decode_in_order``'s order, tokens_per_step, threshold, greedy, temperature, end_token,
            generator (no remasking).

    Returns:
        tuple[Tensor, int, int]: the filled tokens, int64 (B, L); the network calls; those over the whole sequence.
    """
    free = (x == mask_id) & ~given  # (B, L)
    positions = torch.arange(x.shape[1], device=x.device)
    calls = full = 0
    while free.any():
        start = int(free.any(0).nonzero()[0])
        stop = min(start + int(cache_block), x.shape[1])
        inside = (positions >= start) & (positions < stop)  # (L,)
        denoiser = BlockDenoiser(network, kind, start, stop)
        x, _ = decode_in_order(denoiser, x, mask_id, num_tokens, given=~(free & inside), **order_keywords)
        free &= ~inside
        calls, full = calls + denoiser.calls, full + denoiser.full
    return x, calls, full
