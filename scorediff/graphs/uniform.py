"""Uniform graph: every token jumps to a uniformly drawn token."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import InputError
from .base import Graph, expand_like, expm1_stable


class UniformGraph(Graph):
    """``Q = 1 1^T / N - I`` over ``N = num_tokens`` states; no mask state.

    .. math:: \\exp(\\bar\\sigma Q) = e^{-\\bar\\sigma} I + (1 - e^{-\\bar\\sigma}) \\frac{1 1^T}{N}

    Args:
        num_tokens (int): number of data tokens ``N``; ``vocab_size == num_tokens``.
    """

    def __init__(self, num_tokens: int):
        if int(num_tokens) < 2:
            raise InputError(f"UniformGraph needs num_tokens >= 2; got {num_tokens}")
        self.vocab_size = int(num_tokens)

    def rate_matrix(self, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
        n = self.vocab_size
        return torch.full((n, n), 1.0 / n, dtype=dtype, device=device) - torch.eye(n, dtype=dtype, device=device)

    def transition(self, x: Tensor, sigma_bar: Tensor | float) -> Tensor:
        sigma_bar = expand_like(sigma_bar, x)
        move = -torch.expm1(-sigma_bar)[..., None]  # (..., 1) probability of a jump
        probs = (move / self.vocab_size).expand(*x.shape, self.vocab_size)
        stay = 1 - move * (self.vocab_size - 1) / self.vocab_size
        return probs.scatter(-1, x[..., None], stay.expand(*x.shape, 1))

    def transp_transition(self, x: Tensor, sigma_bar: Tensor | float) -> Tensor:
        return self.transition(x, sigma_bar)  # Q is symmetric

    def rate_into(self, x: Tensor) -> Tensor:
        rate = torch.full((*x.shape, self.vocab_size), 1.0 / self.vocab_size, device=x.device)
        return rate.scatter(-1, x[..., None], 1.0 / self.vocab_size - 1.0)

    def limit_distribution(self, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
        return torch.full((self.vocab_size,), 1.0 / self.vocab_size, dtype=dtype, device=device)

    def sample_limit(self, *shape: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        return torch.randint(0, self.vocab_size, shape, generator=generator, device=device)

    def sample_transition(
        self, x: Tensor, sigma_bar: Tensor | float, generator: torch.Generator | None = None
    ) -> Tensor:
        move_chance = -torch.expm1(-expand_like(sigma_bar, x, torch.float64))
        move = torch.rand(x.shape, dtype=torch.float64, device=x.device, generator=generator) < move_chance
        target = torch.randint(0, self.vocab_size, x.shape, device=x.device, generator=generator)
        return torch.where(move, target, x)

    def staggered_score(self, score: Tensor, delta: Tensor | float) -> Tensor:
        delta = expand_like(delta, score[..., 0], score.dtype)[..., None]
        # exp(-delta Q) = e^delta I + (1 - e^delta) 1 1^T / N
        return delta.exp() * score - torch.expm1(delta) * score.mean(-1, keepdim=True)

    def score_entropy(self, log_score: Tensor, sigma_bar: Tensor | float, x_t: Tensor, x_0: Tensor) -> Tensor:
        n = self.vocab_size
        esigm1 = expm1_stable(expand_like(sigma_bar, x_t, log_score.dtype))
        # x_t == x_0: every other token has ratio esigm1 / (esigm1 + N).
        # x_t != x_0: x_0 has ratio 1 + N / esigm1, every other token ratio 1.
        stay_ratio = esigm1 / (esigm1 + n)
        same = x_t == x_0

        log_score_x_t = log_score.gather(-1, x_t[..., None]).squeeze(-1)
        log_score_x_0 = log_score.gather(-1, x_0[..., None]).squeeze(-1)
        sum_others = log_score.sum(-1) - log_score_x_t  # sum over y != x_t of log s_y
        linear = torch.where(same, stay_ratio * sum_others, sum_others + n / esigm1 * log_score_x_0)

        score_sum = log_score.exp().sum(-1) - log_score_x_t.exp()

        log_stay = torch.log(stay_ratio)
        constant = torch.where(
            same,
            (n - 1) * stay_ratio * (log_stay - 1),  # (N - 1) K(a), a = stay_ratio
            (-log_stay - 1) / stay_ratio - (n - 2),  # K(1 / a) + (N - 2) K(1)
        )
        return (score_sum - linear + constant) / n
