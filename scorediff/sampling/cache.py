"""Skipping network calls that cannot change anything: the score of a time-independent absorbing model.

A time-independent denoiser (RADD, or MDLM's SUBS) gives ``p_theta(x_0 | x_t)`` from ``x_t`` alone; the noise
level only rescales the score (``AbsorbingGraph.score_from_clean``). So while a sequence does not change
between steps, neither does its network output, and reusing it is exact (MDLM and RADD report 3-4x fewer
calls). With the absorbing graph a sequence changes only when one of its masks is filled, at most
``seq_len`` times, so however many steps the sampler takes a sequence needs at most ``seq_len + 1`` calls.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..graphs.absorbing import AbsorbingGraph

#: ``log_probs_fn(x_t) -> log p_theta(x_0 | x_t)``: int64 (B, L) to float (B, L, V), ``-inf`` at the mask.
CleanLogProbsFn = Callable[[Tensor], Tensor]


class TimeIndependentScore:
    """A ``ScoreFn`` built from a time-independent denoiser, recomputing only the sequences that changed.

    Cached and uncached (``cache=False``) calls compute the score with the same arithmetic from the same
    denoiser outputs, so a sampler draws the same tokens either way.

    Args:
        log_probs_fn (CleanLogProbsFn): the denoiser.
        cache (bool): reuse the outputs of sequences that did not change since the last call.
        pass_rows (bool): call ``log_probs_fn(x_t[rows], rows)`` with the bool (B,) rows it is given, for a
            denoiser that holds per-row state (the clean blocks a block diffusion model has cached).
        mask_id (int | None): the mask state; when given, a cached call also skips sequences with no mask left,
            whose tokens can no longer move whatever the score says (the last step of a short run, mostly).

    Attributes:
        nfe (int): calls of ``log_probs_fn`` so far (on the whole batch or on the rows that changed).
        rows_evaluated (int): sequences passed to ``log_probs_fn`` so far.
    """

    def __init__(
        self, log_probs_fn: CleanLogProbsFn, cache: bool = True, pass_rows: bool = False, mask_id: int | None = None
    ):
        self.log_probs_fn = log_probs_fn
        self.cache = cache
        self.pass_rows = pass_rows
        self.mask_id = mask_id
        self.nfe = 0
        self.rows_evaluated = 0
        self._x: Tensor | None = None
        self._log_p: Tensor | None = None

    def clean_log_probs(self, x_t: Tensor) -> Tensor:
        """``log p_theta(x_0 | x_t)`` (B, L, V), from the cache where ``x_t``'s rows did not change."""
        if self._x is None or not self.cache or self._x.shape != x_t.shape:
            rows = torch.ones(x_t.shape[0], dtype=torch.bool, device=x_t.device)
        else:
            rows = (self._x != x_t).any(-1)
            if self.mask_id is not None:
                rows &= (x_t == self.mask_id).any(-1)
        if rows.all():
            self._log_p = self._denoise(x_t, rows)
        elif rows.any():
            self._log_p = self._log_p.clone()
            self._log_p[rows] = self._denoise(x_t[rows], rows)
        if rows.any():
            self.nfe += 1
            self.rows_evaluated += int(rows.sum())
        self._x = x_t.clone()
        return self._log_p

    def _denoise(self, x_t: Tensor, rows: Tensor) -> Tensor:
        return self.log_probs_fn(x_t, rows) if self.pass_rows else self.log_probs_fn(x_t)

    def __call__(self, x_t: Tensor, sigma_bar: Tensor) -> Tensor:
        return AbsorbingGraph.score_from_clean(self.clean_log_probs(x_t), x_t, sigma_bar)
