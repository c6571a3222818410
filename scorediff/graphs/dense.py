"""Dense graph: any small rate matrix, e.g. a DNA substitution model (transitions vs transversions)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import InputError
from .base import Graph, expand_like


class DenseGraph(Graph):
    """A user-given generator ``Q`` over a small vocabulary; transitions by ``torch.linalg.matrix_exp``.

    Args:
        rate_matrix (Tensor | list): ``(V, V)`` in the column convention: ``Q[y, x]`` is the rate of
            ``x -> y``, off-diagonal entries are >= 0 and every column sums to 0. (A matrix whose
            rows sum to 0 is in the other convention: pass its transpose.)
        mask_id (int | None): index of an absorbing state, if the matrix has one.

    Example:
        ``DenseGraph([[-2, 1, 1], [1, -2, 1], [1, 1, -2]])``
    """

    def __init__(self, rate_matrix: Tensor | list, mask_id: int | None = None):
        given = torch.as_tensor(rate_matrix)
        q = given.to(torch.float64)
        if q.dim() != 2 or q.shape[0] != q.shape[1] or q.shape[0] < 2:
            raise InputError(f"rate_matrix must be square (V, V) with V >= 2; got shape {tuple(q.shape)}")
        off_diagonal = q - torch.diag(torch.diag(q))
        if (off_diagonal < 0).any():
            raise InputError("rate_matrix must have non-negative off-diagonal entries (rates)")
        # zero up to the rounding of the given precision, relative to the matrix's scale
        precision = torch.finfo(given.dtype).eps if given.is_floating_point() else torch.finfo(torch.float64).eps
        tolerance = 16 * q.shape[0] * precision * max(q.abs().max().item(), 1e-300)
        column_sums = q.sum(0).abs().max().item()
        if column_sums > tolerance:
            hint = " (its rows sum to 0: pass its transpose)" if q.sum(1).abs().max().item() <= tolerance else ""
            raise InputError(
                f"rate_matrix columns must sum to 0; got max |column sum| {column_sums:.3g} "
                f"(tolerance {tolerance:.1g}){hint}"
            )
        q = q - torch.diag(q.sum(0))  # exactly 0 in float64
        not_finite = (~torch.isfinite(q)).any(0)  # an infinite rate, or rates whose sum overflows float64
        if not_finite.any():
            state = not_finite.nonzero()[0].item()
            raise InputError(
                f"rate_matrix must hold finite rates, with a finite total out of every state; not so for state {state}"
            )
        self._q = q
        self.vocab_size = q.shape[0]
        self.mask_id = mask_id
        # Stationary distribution: the null vector of Q, normalised.
        eigenvalues, eigenvectors = torch.linalg.eig(q)
        null = eigenvectors[:, eigenvalues.abs().argmin()].real
        self._limit = (null / null.sum()).clamp_min(0.0)

    def rate_matrix(self, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
        return self._q.to(dtype=dtype, device=device)

    def _exp(self, x: Tensor, sigma_bar: Tensor | float) -> Tensor:
        sigma_bar = expand_like(sigma_bar, x)
        q = self.rate_matrix(sigma_bar.dtype, x.device)
        return torch.linalg.matrix_exp(sigma_bar[..., None, None] * q)  # (..., V, V), broadcastable to x

    def transition(self, x: Tensor, sigma_bar: Tensor | float) -> Tensor:
        m = self._exp(x, sigma_bar).expand(*x.shape, self.vocab_size, self.vocab_size)
        return m.gather(-1, x[..., None, None].expand(*x.shape, self.vocab_size, 1)).squeeze(-1)

    def transp_transition(self, x: Tensor, sigma_bar: Tensor | float) -> Tensor:
        m = self._exp(x, sigma_bar).expand(*x.shape, self.vocab_size, self.vocab_size)
        return m.gather(-2, x[..., None, None].expand(*x.shape, 1, self.vocab_size)).squeeze(-2)

    def rate_into(self, x: Tensor) -> Tensor:
        return self._q.to(x.device)[x]

    def limit_distribution(self, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
        return self._limit.to(dtype=dtype, device=device)

    def __repr__(self) -> str:
        return f"DenseGraph(vocab_size={self.vocab_size})"


def from_rates(num_tokens: int, rate_matrix: Sequence[Sequence[float]]) -> DenseGraph:
    """A user's generator in the row convention of phylogenetics (``R[x][y]`` the rate of ``x -> y``, rows
    summing to 0); the diagonal may be left 0 and is filled in."""
    rates = torch.as_tensor(rate_matrix, dtype=torch.float64)
    if rates.dim() != 2 or rates.shape[0] != rates.shape[1] or rates.shape[0] != int(num_tokens):
        shape = list(rates.shape)
        raise InputError(f"the rate matrix must be {num_tokens} x {num_tokens} (one row per token); got {shape}")
    if not bool(torch.isfinite(rates).all()):
        raise InputError("the rate matrix holds a value that is not finite")
    off = rates - torch.diag(torch.diag(rates))
    return DenseGraph((off - torch.diag(off.sum(1))).T)
