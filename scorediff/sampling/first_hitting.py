"""The first-hitting sampler of the absorbing graph: exact reverse sampling, one position at a time.

In the absorbing process every masked position of ``x_t`` was unmasked at an independent time, and going
backwards from ``t`` each masked position is unmasked at a time whose distribution is known in closed form. The
next event is the latest of those times, which can be drawn directly; at that time one position, uniform among
the masked ones, takes a token from its denoising distribution ``p(x_0^i | x_t)``, and nothing else changes
(Zheng et al. 2024, "Masked diffusion models are secretly time-agnostic masked models and exploit inaccurate
categorical sampling", arXiv 2409.02908). No time grid, so no discretisation error: with the exact score the
samples follow the data law exactly. It takes one network call per masked position.

With ``m(t) = 1 - e^{-sigma_bar(t)}`` the masked fraction, a position masked at ``t`` was unmasked before ``s``
with probability ``m(s) / m(t)``; the latest of ``n`` such times ``tau`` has ``m(tau) = m(t) u^{1/n}``,
``u ~ U(0, 1)``, so ``sigma_bar(tau) = -log(1 - m(t) u^{1/n})``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import InputError
from ..graphs import Graph
from ..graphs.base import sample_from
from ..schedules import NoiseSchedule
from ..types import ScoreFn
from .filters import temper


@torch.no_grad()
def sample_first_hitting(
    score_fn: ScoreFn,
    graph: Graph,
    schedule: NoiseSchedule,
    x: Tensor,
    *,
    given: Tensor | None = None,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Fill every mask of ``x`` (int64 (B, L)), one position per network call; ``given`` (bool) marks fixed tokens.

    Returns the filled tokens, int64 (B, L).
    """
    if graph.mask_id is None:
        raise InputError("the first-hitting sampler needs the absorbing graph")
    mask_id, num_tokens = graph.mask_id, graph.num_tokens
    x = x.clone()
    masked = x == mask_id
    if given is not None:
        masked &= ~given
    batch_size = x.shape[0]
    sigma_bar_1 = schedule.total(torch.ones(batch_size, dtype=torch.float64, device=x.device))
    fraction = -torch.expm1(-sigma_bar_1)  # m(1), per sequence
    rows = torch.arange(batch_size, device=x.device)
    while masked.any():
        remaining = masked.sum(-1)  # (B,)
        active = remaining > 0
        u = torch.rand(batch_size, dtype=torch.float64, device=x.device, generator=generator)
        fraction = torch.where(active, fraction * u ** (1.0 / remaining.clamp_min(1)), fraction)
        sigma_bar = -torch.log1p(-fraction)
        log_score = score_fn(x, sigma_bar)  # (B, L, V)
        # a uniformly chosen masked position of each sequence
        keys = torch.rand(x.shape, dtype=torch.float64, device=x.device, generator=generator)
        position = torch.where(masked, keys, -1.0).argmax(-1)  # (B,)
        token_log_score = log_score[rows, position, :num_tokens].double()  # (B, N), prop. to p(x_0^i | x_t)
        token = sample_from(temper(token_log_score, temperature, top_p), generator)
        x[rows[active], position[active]] = token[active]
        masked[rows[active], position[active]] = False
    return x
