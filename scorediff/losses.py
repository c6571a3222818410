"""The score entropy training loss (SEDD, Lou et al. 2024, eq. 9 and Sec. 3.3)."""

from __future__ import annotations

import torch
from torch import Tensor

from .graphs import Graph
from .schedules import NoiseSchedule
from .types import ScoreFn


def sample_times(
    batch_size: int,
    *,
    antithetic: bool = True,
    t_min: float = 1e-3,
    generator: torch.Generator | None = None,
    device=None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Diffusion times in ``[t_min, 1)``, float ``(batch_size,)``; float64 unless ``dtype`` says otherwise.

    With ``antithetic`` the batch is stratified: one uniform offset ``u`` and ``t_b = (u + b / B) mod 1``
    (the low-discrepancy sampler of Kingma et al. 2021), so every batch covers [0, 1) evenly and the
    batch-mean loss has lower variance than with i.i.d. times; each ``t_b`` is still marginally uniform.
    """
    if antithetic:
        offset = torch.rand(1, generator=generator, device=device, dtype=torch.float64)
        grid = torch.arange(batch_size, device=device, dtype=torch.float64) / batch_size
        u = (offset + grid) % 1.0
    else:
        u = torch.rand(batch_size, generator=generator, device=device, dtype=torch.float64)
    return (t_min + (1 - t_min) * u).to(dtype)


def score_entropy_sum(
    score_fn: ScoreFn,
    graph: Graph,
    x_0: Tensor,
    sigma_bar: Tensor,
    x_t: Tensor | None = None,
    generator: torch.Generator | None = None,
    given: Tensor | None = None,
) -> Tensor:
    """``sum_i DSE_i(x_t, x_0)`` at total noise ``sigma_bar`` for one draw ``x_t ~ p(. | x_0)`` per sequence;
    with ``given``, over the other positions only, which keep their clean tokens in ``x_t`` (a prompt).

    Args:
        score_fn (ScoreFn): the model.
        graph (Graph): forward process.
        x_0 (Tensor): int64, shape (batch_size, seq_len), clean tokens.
        sigma_bar (Tensor): float, shape (batch_size,), total noise.
        x_t (Tensor | None): int64, shape (batch_size, seq_len); drawn from ``p(. | x_0)`` when None.
        generator (torch.Generator | None): for the draw of ``x_t``.
        given (Tensor | None): bool, shape (batch_size, seq_len): positions never noised nor scored.

    Returns:
        Tensor: float, shape (batch_size,), nats per sequence.
    """
    if x_t is None:
        x_t = graph.sample_transition(x_0, sigma_bar, generator=generator)
    if given is not None:
        x_t = torch.where(given, x_0, x_t)
    log_score = score_fn(x_t, sigma_bar)  # (B, L, V)
    entropy = graph.score_entropy(log_score, sigma_bar, x_t, x_0)  # (B, L)
    return (entropy if given is None else torch.where(given, 0.0, entropy)).sum(-1)  # (B,)


def weighted_score_entropy(
    score_fn: ScoreFn,
    graph: Graph,
    schedule: NoiseSchedule,
    x_0: Tensor,
    t: Tensor,
    x_t: Tensor | None = None,
    generator: torch.Generator | None = None,
    given: Tensor | None = None,
) -> Tensor:
    """``sigma(t) * sum_i DSE_i(x_t, x_0)`` with ``x_t ~ p_t(. | x_0)``; float (batch_size,), nats per sequence.

    ``t`` is float (batch_size,); the other arguments are those of ``score_entropy_sum``.
    """
    values = score_entropy_sum(score_fn, graph, x_0, schedule.total(t), x_t, generator, given)
    return schedule.rate(t).to(values.dtype) * values


def score_entropy_loss(
    score_fn: ScoreFn,
    graph: Graph,
    schedule: NoiseSchedule,
    x_0: Tensor,
    generator: torch.Generator | None = None,
    antithetic: bool = True,
    t_min: float = 1e-3,
) -> Tensor:
    """Denoising score entropy loss, nats per sequence, float ``(batch_size,)``.

    .. math:: \\mathcal L(x_0) = \\sigma(t) \\sum_{i=1}^{L} \\mathrm{DSE}_i(x_t, x_0),
              \\quad t \\sim U[t_{min}, 1], \\; x_t \\sim p_t(\\cdot \\mid x_0)

    Its expectation over ``t`` is ``1 / (1 - t_min)`` times the diffusion part of the likelihood bound
    restricted to ``[t_min, 1]``. ``t_min`` (1e-3, as in SEDD) avoids the high-variance region near the
    data where ``1 / (e^{sigma_bar} - 1)`` blows up. Divide by ``seq_len`` to log nats per token.

    Args:
        score_fn (ScoreFn): the model, ``(x_t, sigma_bar) -> log_score``.
        graph (Graph): forward process.
        schedule (NoiseSchedule): noise schedule.
        x_0 (Tensor): int64, shape (batch_size, seq_len), clean tokens.
        generator (torch.Generator | None): source of all randomness (times and noised tokens).
        antithetic (bool): stratify ``t`` across the batch (see ``sample_times``).
        t_min (float): smallest diffusion time drawn.
    """
    t = sample_times(x_0.shape[0], antithetic=antithetic, t_min=t_min, generator=generator, device=x_0.device)
    return weighted_score_entropy(score_fn, graph, schedule, x_0, t, generator=generator)
