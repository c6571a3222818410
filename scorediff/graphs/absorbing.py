"""Absorbing graph: every token jumps to an extra MASK state, which it never leaves."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from .base import Graph, expand_like, expm1_stable


class AbsorbingGraph(Graph):
    """Tokens ``0..N-1`` jump to ``mask_id = N`` at rate 1; the mask column of ``Q`` is 0.

    .. math:: p(x_t = x_0) = e^{-\\bar\\sigma}, \\qquad p(x_t = \\mathrm{MASK}) = 1 - e^{-\\bar\\sigma}

    Args:
        num_tokens (int): number of data tokens ``N``; ``vocab_size == N + 1``, ``mask_id == N``.
    """

    def __init__(self, num_tokens: int):
        if int(num_tokens) < 1:
            raise InputError(f"AbsorbingGraph needs num_tokens >= 1; got {num_tokens}")
        self.mask_id = int(num_tokens)
        self.vocab_size = int(num_tokens) + 1

    def rate_matrix(self, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
        q = -torch.eye(self.vocab_size, dtype=dtype, device=device)
        q[self.mask_id] += 1.0
        return q

    def transition(self, x: Tensor, sigma_bar: Tensor | float) -> Tensor:
        sigma_bar = expand_like(sigma_bar, x)
        stay = torch.exp(-sigma_bar)[..., None]  # (..., 1)
        one_hot = F.one_hot(x, self.vocab_size).to(stay.dtype)  # (..., V)
        to_mask = F.one_hot(torch.full_like(x, self.mask_id), self.vocab_size).to(stay.dtype)
        return stay * one_hot + (1 - stay) * to_mask

    def transp_transition(self, x: Tensor, sigma_bar: Tensor | float) -> Tensor:
        sigma_bar = expand_like(sigma_bar, x)
        stay = torch.exp(-sigma_bar)[..., None]  # (..., 1)
        one_hot = F.one_hot(x, self.vocab_size).to(stay.dtype)  # (..., V)
        # Row MASK of exp(sigma_bar Q): every token reached MASK with 1 - e^{-sigma_bar}, MASK stayed.
        from_any = (x == self.mask_id)[..., None] * (1 - stay)
        return stay * one_hot + from_any

    def rate_into(self, x: Tensor) -> Tensor:
        is_mask = (x == self.mask_id)[..., None].float()
        return is_mask - F.one_hot(x, self.vocab_size).float()

    def limit_distribution(self, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
        return F.one_hot(torch.tensor(self.mask_id, device=device), self.vocab_size).to(dtype)

    def sample_limit(self, *shape: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        return torch.full(shape, self.mask_id, dtype=torch.int64, device=device)

    def sample_transition(
        self, x: Tensor, sigma_bar: Tensor | float, generator: torch.Generator | None = None
    ) -> Tensor:
        move_chance = -torch.expm1(-expand_like(sigma_bar, x, torch.float64))
        move = torch.rand(x.shape, dtype=torch.float64, device=x.device, generator=generator) < move_chance
        return torch.where(move, self.mask_id, x)

    def staggered_score(self, score: Tensor, delta: Tensor | float) -> Tensor:
        delta = expand_like(delta, score[..., 0], score.dtype)
        # exp(-delta Q) scales every token entry by e^delta; the MASK entry gains (1 - e^delta) sum_{y != MASK} s_y.
        token_sum = score[..., : self.mask_id].sum(-1)
        out = score * delta.exp()[..., None]
        mask_entry = score[..., self.mask_id] - torch.expm1(delta) * token_sum
        return torch.cat([out[..., : self.mask_id], mask_entry[..., None]], dim=-1)

    def score_entropy(self, log_score: Tensor, sigma_bar: Tensor | float, x_t: Tensor, x_0: Tensor) -> Tensor:
        # Only a masked position has incoming rates (from every token, rate 1); there r_{x_0} = 1 / (e^sigma_bar - 1)
        # and every other ratio is 0.
        masked = x_t == self.mask_id
        ratio = 1 / expm1_stable(expand_like(sigma_bar, x_t, log_score.dtype))
        positive = log_score[..., : self.mask_id].exp().sum(-1)
        # x_0 never equals the mask in valid data; clamp keeps the gather in range for masked-out rows.
        linear = ratio * log_score.gather(-1, x_0.clamp_max(self.mask_id - 1)[..., None]).squeeze(-1)
        constant = ratio * (torch.log(ratio) - 1)
        return torch.where(masked, positive - linear + constant, 0.0)

    @staticmethod
    def score_from_clean(log_p: Tensor, x_t: Tensor, sigma_bar: Tensor) -> Tensor:
        r"""The log score of a time-independent denoiser (RADD, Ou et al. 2024, Theorem 1).

        .. math:: \log s_\theta(x_t)_i[y] = \log p_\theta(x_0^i = y \mid x_t) - \log(e^{\bar\sigma} - 1)

        for data tokens ``y`` at masked positions, 0 at each current token.

        Args:
            log_p (Tensor): float (B, L, V), ``log p_theta(x_0 = y | x_t)``, ``-inf`` at the mask.
            x_t (Tensor): int64 (B, L).
            sigma_bar (Tensor): float (B,).
        """
        shift = torch.log(expm1_stable(sigma_bar.to(log_p.dtype)))  # (B,)
        return (log_p - shift[:, None, None]).scatter(-1, x_t[..., None], 0.0)

    def prior_kl(self, x_0: Tensor, sigma_bar: Tensor | float) -> Tensor:
        """``KL(p(x_t | x_0) || base)`` per position, with a base that is not a point mass.

        The KL to the all-MASK limit is infinite whenever ``sigma_bar`` is finite (as with the
        log-linear schedule, ``sigma_bar(1) = -log(eps)``). The base used instead is what the forward
        process makes of a uniformly drawn token: MASK with probability ``1 - e^{-sigma_bar}``, each
        token with ``e^{-sigma_bar} / N``. The KL is then ``e^{-sigma_bar} log N``, the price of the
        base not knowing the ``e^{-sigma_bar}`` fraction of tokens that were never masked.
        """
        stay = torch.exp(-expand_like(sigma_bar, x_0, torch.float64))
        return (stay * math.log(self.num_tokens)).expand(x_0.shape)
