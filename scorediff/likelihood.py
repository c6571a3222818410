"""Upper bound on the negative log-likelihood (SEDD, Theorem 3.6), perplexity and bits per token."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .errors import InputError
from .graphs import Graph
from .losses import score_entropy_sum, weighted_score_entropy
from .schedules import NoiseSchedule
from .types import ScoreFn


@torch.no_grad()
def elbo(
    score_fn: ScoreFn,
    graph: Graph,
    schedule: NoiseSchedule,
    x_0: Tensor,
    num_t: int = 128,
    generator: torch.Generator | None = None,
    given: Tensor | None = None,
) -> Tensor:
    """Monte Carlo estimate of the bound on ``-log p_theta(x_0)``, nats per sequence, float64 ``(batch_size,)``.

    .. math:: -\\log p_\\theta(x_0) \\le \\int_0^{\\bar\\sigma(1)}
              \\mathbb E_{x \\sim p_{\\bar\\sigma}(\\cdot \\mid x_0)} \\sum_i \\mathrm{DSE}_i(x, x_0) \\, d\\bar\\sigma
              + \\sum_i \\mathrm{KL}\\big(p_{\\bar\\sigma(1)}(\\cdot \\mid x_0^i) \\,\\|\\, p_{base}\\big)

    The integral runs over noise levels; with ``d sigma_bar = sigma(t) dt`` it is
    ``int_0^1 E sigma(t) sum_i DSE_i dt`` plus, for a schedule with ``sigma_bar(0) > 0`` (geometric:
    ``sigma_min``), the stretch ``[0, sigma_bar(0)]`` that ``t`` never reaches, so the bound runs all the
    way to clean data. Estimation: ``num_t`` stratified times per sequence, ``t_k = (k + u) / num_t`` with
    one ``u ~ U(0, 1]`` per sequence and one draw of ``x_t`` at each (unbiased over ``(0, 1]``, far lower
    variance than i.i.d. times), and ``num_t // 8`` (at least 1) stratified noise levels in
    ``(0, sigma_bar(0)]`` when that stretch exists.

    The prior term is exact (``graph.prior_kl`` at ``sigma_bar(1)``). For the uniform graph the base
    is the uniform distribution; for the absorbing graph it puts ``e^{-sigma_bar(1)} / N`` on each
    token and the rest on MASK (see ``AbsorbingGraph.prior_kl``).

    Args:
        score_fn (ScoreFn): the model, ``(x_t, sigma_bar) -> log_score``.
        graph (Graph): forward process.
        schedule (NoiseSchedule): noise schedule.
        x_0 (Tensor): int64, shape (batch_size, seq_len), clean tokens.
        num_t (int): number of times per sequence (network calls on the batch).
        generator (torch.Generator | None): source of all randomness.
        given (Tensor | None): bool, shape (batch_size, seq_len): positions that are never noised (a prompt);
            the bound is then that of ``-log p_theta(x_0[~given] | x_0[given])``, the other positions' terms.
    """
    if int(num_t) < 1:
        raise InputError(f"num_t must be >= 1; got {num_t}")
    graph.check_tokens(x_0, "x_0")
    batch_size = x_0.shape[0]
    offset = 1 - torch.rand(batch_size, dtype=torch.float64, device=x_0.device, generator=generator)
    diffusion = torch.zeros(batch_size, dtype=torch.float64, device=x_0.device)
    for k in range(int(num_t)):
        t = (k + offset) / num_t  # in (k / num_t, (k + 1) / num_t]
        values = weighted_score_entropy(score_fn, graph, schedule, x_0, t, generator=generator, given=given)
        diffusion += values.double()
    diffusion /= num_t
    # A schedule that starts above zero noise (geometric: sigma_bar(0) = sigma_min) leaves the stretch
    # [0, sigma_bar(0)] of the integral, in noise units, outside t in [0, 1]; it is estimated here with
    # stratified noise levels so that the bound covers the whole way to clean data.
    sigma_bar_0 = float(schedule.total(torch.zeros((), dtype=torch.float64)))
    if sigma_bar_0 > 0:
        head_draws = max(1, int(num_t) // 8)
        head = torch.zeros_like(diffusion)
        for k in range(head_draws):
            sigma_bar = (
                sigma_bar_0
                * (k + 1 - torch.rand(batch_size, dtype=torch.float64, device=x_0.device, generator=generator))
                / head_draws
            )
            head += score_entropy_sum(score_fn, graph, x_0, sigma_bar, generator=generator, given=given).double()
        diffusion += sigma_bar_0 * head / head_draws
    sigma_bar_1 = schedule.total(torch.ones(batch_size, dtype=torch.float64, device=x_0.device))
    prior = graph.prior_kl(x_0, sigma_bar_1)  # (B, L)
    prior = (prior if given is None else torch.where(given, 0.0, prior)).sum(-1)
    return diffusion + prior


def bits_per_token(nats: Tensor, num_tokens: int) -> float:
    """Average bound in bits per token from per-sequence bounds ``nats`` over ``num_tokens`` tokens each."""
    return float(nats.double().mean()) / num_tokens / math.log(2)


def perplexity(nats: Tensor, num_tokens: int) -> float:
    """Perplexity bound ``exp(mean nats per token)`` from per-sequence bounds over ``num_tokens`` tokens each."""
    return math.exp(float(nats.double().mean()) / num_tokens)
