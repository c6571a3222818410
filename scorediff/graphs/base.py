"""The forward noising process of one position: a continuous-time Markov chain with generator Q.

Convention (the same as the original SEDD code): **columns** of ``Q`` are source states,
``Q[y, x]`` is the rate of a jump ``x -> y``, every column sums to 0 and ``dp/dt = sigma(t) Q p``.
Hence ``exp(sigma_bar Q)[y, x] = p(x_t = y | x_0 = x)``.

Shapes: ``x`` is int64 of any shape ``(...)``; ``sigma_bar`` is a float or a tensor of shape
``(batch_size,)``, ``(batch_size, 1)`` or ``x``'s shape (trailing singleton dimensions are added
until it has as many dimensions as ``x``, then it broadcasts). Per-state outputs have shape
``(..., vocab_size)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from ..errors import InputError


def expand_like(sigma_bar: Tensor | float, x: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """Give ``sigma_bar`` as many dimensions as ``x`` by adding trailing singleton dimensions."""
    sigma_bar = torch.as_tensor(sigma_bar, device=x.device)
    if dtype is not None:
        sigma_bar = sigma_bar.to(dtype)
    elif not sigma_bar.is_floating_point():
        sigma_bar = sigma_bar.to(torch.get_default_dtype())
    while sigma_bar.dim() < x.dim():
        sigma_bar = sigma_bar.unsqueeze(-1)
    return sigma_bar


def expm1_stable(sigma_bar: Tensor) -> Tensor:
    """``exp(sigma_bar) - 1``; expm1 is exact for small arguments, the plain form for large ones."""
    return torch.where(sigma_bar < 0.5, torch.expm1(sigma_bar), torch.exp(sigma_bar) - 1)


class Graph(ABC):
    """A rate matrix ``Q`` over ``vocab_size`` states and the quantities SEDD needs from it.

    Subclasses give ``rate_matrix``, ``transition``, ``transp_transition`` and ``rate_into``; the
    generic ``score_entropy``, ``staggered_score`` and ``sample_transition`` here work from those
    and are overridden where a closed form is cheaper or more accurate.
    """

    #: Number of states, including the mask state of an absorbing graph.
    vocab_size: int
    #: Index of the absorbing mask state, or None.
    mask_id: int | None = None

    @property
    def num_tokens(self) -> int:
        """Number of data tokens (states that clean data can take)."""
        return self.vocab_size - (self.mask_id is not None)

    @abstractmethod
    def rate_matrix(self, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
        """The dense generator ``Q``, float ``(vocab_size, vocab_size)``, columns summing to 0."""

    @abstractmethod
    def transition(self, x: Tensor, sigma_bar: Tensor | float) -> Tensor:
        """Column ``x`` of ``exp(sigma_bar Q)``: ``p(x_t = y | x_0 = x)`` for every ``y``.

        Args:
            x (Tensor): int64, shape (...).
            sigma_bar (Tensor | float): total noise, see the module docstring.

        Returns:
            Tensor: float, shape (..., vocab_size); sums to 1 over the last dimension.
        """

    @abstractmethod
    def transp_transition(self, x: Tensor, sigma_bar: Tensor | float) -> Tensor:
        """Row ``x`` of ``exp(sigma_bar Q)``: ``p(x_t = x | x_s = y)`` for every ``y``, shape (..., vocab_size)."""

    @abstractmethod
    def rate_into(self, x: Tensor) -> Tensor:
        """Row ``x`` of ``Q``: the forward rate ``Q(y -> x)`` from every ``y`` into ``x``, shape (..., vocab_size)."""

    @abstractmethod
    def limit_distribution(self, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
        """The distribution the chain converges to as ``sigma_bar -> inf``, float (vocab_size,)."""

    def sample_limit(self, *shape: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        """Draw int64 tokens of the given shape from the limit distribution."""
        probs = self.limit_distribution(device=device)
        return sample_from(probs.expand(*shape, self.vocab_size), generator)

    def sample_transition(
        self, x: Tensor, sigma_bar: Tensor | float, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw ``x_t ~ p(. | x_0 = x)`` for every position independently; int64, ``x``'s shape."""
        return sample_from(self.transition(x, expand_like(sigma_bar, x, torch.float64)), generator)

    def reverse_rate(self, x_t: Tensor, score: Tensor) -> Tensor:
        """Rates of the reverse chain out of ``x_t`` (without the ``sigma(t)`` factor).

        .. math:: \\bar R(x, y) = s_y \\, Q(y \\to x) \\text{ for } y \\ne x, \\quad
                  \\bar R(x, x) = -\\sum_{y \\ne x} \\bar R(x, y)

        Args:
            x_t (Tensor): int64, shape (...).
            score (Tensor): positive ratios ``s``, float, shape (..., vocab_size).

        Returns:
            Tensor: float, shape (..., vocab_size); each row sums to 0.
        """
        rate = self.rate_into(x_t).to(score.dtype) * score
        rate = rate.scatter(-1, x_t[..., None], 0.0)
        return rate.scatter(-1, x_t[..., None], -rate.sum(-1, keepdim=True))

    def staggered_score(self, score: Tensor, delta: Tensor | float) -> Tensor:
        """``exp(-delta Q) s``: turns ratios at noise level ``sigma_bar`` into ratios at ``sigma_bar - delta``.

        This is the Tweedie factor of the analytic sampler (SEDD, Theorem 4.2).

        Args:
            score (Tensor): float, shape (..., vocab_size).
            delta (Tensor | float): noise removed by the step, broadcastable as ``sigma_bar``.
        """
        delta = expand_like(delta, score[..., 0], score.dtype)
        inverse = torch.linalg.matrix_exp(-delta[..., None, None] * self.rate_matrix(score.dtype, score.device))
        return (inverse @ score[..., None]).squeeze(-1)

    def score_entropy(self, log_score: Tensor, sigma_bar: Tensor | float, x_t: Tensor, x_0: Tensor) -> Tensor:
        """Denoising score entropy of each position (SEDD, eq. 9, with the constant that makes it >= 0).

        .. math:: \\sum_{y \\ne x_t} Q(y \\to x_t) \\big[ s_y - r_y \\log s_y + K(r_y) \\big], \\quad
                  r_y = \\frac{p(y \\mid x_0)}{p(x_t \\mid x_0)}, \\quad K(a) = a (\\log a - 1)

        Args:
            log_score (Tensor): ``log s``, float, shape (..., vocab_size).
            sigma_bar (Tensor | float): total noise of ``x_t``.
            x_t (Tensor): int64, shape (...), noised tokens.
            x_0 (Tensor): int64, shape (...), clean tokens.

        Returns:
            Tensor: float, shape (...); >= 0, and 0 exactly when ``s = r``.
        """
        probs = self.transition(x_0, expand_like(sigma_bar, x_0, log_score.dtype))  # (..., V)
        weight = self.rate_into(x_t).to(log_score.dtype).scatter(-1, x_t[..., None], 0.0)
        used = weight > 0
        # Entries with zero weight may hold inf / nan ratios; zero them so no nan reaches the gradient.
        ratio = torch.where(used, probs / probs.gather(-1, x_t[..., None]), 0.0)
        log_score = torch.where(used, log_score, 0.0)
        terms = log_score.exp() - ratio * log_score + torch.special.xlogy(ratio, ratio) - ratio
        return (weight * terms).sum(-1)

    def prior_kl(self, x_0: Tensor, sigma_bar: Tensor | float) -> Tensor:
        """``KL(p(x_t | x_0) || base)`` per position at total noise ``sigma_bar``, float, ``x_0``'s shape.

        The base is the limit distribution; the absorbing graph overrides this (see there).
        """
        probs = self.transition(x_0, expand_like(sigma_bar, x_0, torch.float64))
        base = self.limit_distribution(device=x_0.device)
        return (torch.special.xlogy(probs, probs) - torch.special.xlogy(probs, base)).sum(-1)

    def check_tokens(self, x: Tensor, name: str = "tokens") -> None:
        """Raise ``ValueError`` unless ``x`` is an integer tensor with values in ``[0, vocab_size)``."""
        if x.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise InputError(f"{name} must be an integer tensor; got dtype {x.dtype}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.vocab_size):
            raise InputError(
                f"{name} must be in [0, {self.vocab_size}); got values in [{int(x.min())}, {int(x.max())}]"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_tokens={self.num_tokens})"


def sample_from(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One categorical draw per row of unnormalised, non-negative ``probs`` (..., V), made in float64.

    Uses the exponential race ``argmax_y p_y / E_y`` with ``E_y ~ Exp(1)``, equivalent to Gumbel-max.
    float32 noise measurably lowers the entropy of samples over large vocabularies
    (facebookresearch/flow_matching#27), hence float64.
    """
    probs = probs.to(torch.float64)
    uniform = torch.rand(probs.shape, dtype=torch.float64, device=probs.device, generator=generator)
    exponential = -torch.log1p(-uniform)  # 1 - U in (0, 1], so E > 0 except for U == 0
    return (probs / exponential).nan_to_num(nan=-1.0).argmax(-1)
