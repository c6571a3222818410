"""Nucleotide substitution models as forward processes over A, C, G, T (token ids 0-3).

Each is a ``DenseGraph`` in the column convention, ``Q[y, x]`` the rate of ``x -> y``, scaled so that the
expected rate of change at stationarity is 3/4, that of the uniform graph on four states (JC69 is exactly
``UniformGraph(4)``). The same noise schedule then corrupts about as fast under every model.

- ``jc69``: every change equally likely (Jukes & Cantor 1969).
- ``k80``: transitions (A <-> G, C <-> T) ``kappa`` times as fast as transversions (Kimura 1980).
- ``f81``: a change lands on base ``y`` in proportion to its frequency ``pi_y`` (Felsenstein 1981).
- ``hky85``: both (Hasegawa, Kishino & Yano 1985).

The limit distribution is uniform for JC69 and K80 and ``pi`` for F81 and HKY85, so sampling starts from the
data's own base composition.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..errors import InputError
from .dense import DenseGraph

BASES = "ACGT"
RATE_AT_STATIONARITY = 0.75
_TRANSITIONS = {(0, 2), (2, 0), (1, 3), (3, 1)}  # A <-> G, C <-> T


def _check(num_tokens: int) -> None:
    if int(num_tokens) != 4:
        raise InputError(f"nucleotide substitution models need the 4 bases A, C, G, T; got {num_tokens} tokens")


def _frequencies(frequencies: Sequence[float] | None) -> torch.Tensor:
    if frequencies is None:
        return torch.full((4,), 0.25, dtype=torch.float64)
    pi = torch.as_tensor(list(frequencies), dtype=torch.float64)
    if pi.shape != (4,) or not bool(torch.isfinite(pi).all()) or bool((pi <= 0).any()):
        raise InputError(f"base frequencies must be 4 positive numbers (A, C, G, T); got {list(frequencies)}")
    if not math.isfinite(pi.sum()):  # 1e308 twice: the normalised frequencies would all be 0
        raise InputError(f"base frequencies must have a finite sum; got {list(frequencies)}")
    return pi / pi.sum()


#: published estimates lie between about 1 and 40; past about 1e12 float64 cannot hold the transversions beside
#: the transitions, and the stationary law comes out wrong ([0.25, 0, 0.75, 0] for frequencies [0.1, 0.2, 0.3, 0.4])
MAX_KAPPA = 1e6


def substitution_matrix(kappa: float = 1.0, frequencies: Sequence[float] | None = None) -> torch.Tensor:
    """HKY85's generator, float64 (4, 4); ``kappa = 1`` gives F81, uniform frequencies K80, both JC69."""
    if not 0 < kappa <= MAX_KAPPA:
        raise InputError(f"kappa (the transition/transversion rate ratio) must be in (0, {MAX_KAPPA:g}]; got {kappa}")
    pi = _frequencies(frequencies)
    q = torch.zeros(4, 4, dtype=torch.float64)
    for y in range(4):
        for x in range(4):
            if y != x:
                q[y, x] = pi[y] * (kappa if (x, y) in _TRANSITIONS else 1.0)
    q -= torch.diag(q.sum(0))
    leaving = -(pi * torch.diag(q)).sum()  # expected rate of change at stationarity
    return q * (RATE_AT_STATIONARITY / leaving)


def jc69(num_tokens: int = 4) -> DenseGraph:
    _check(num_tokens)
    return DenseGraph(substitution_matrix())


def k80(num_tokens: int = 4, kappa: float = 2.0) -> DenseGraph:
    _check(num_tokens)
    return DenseGraph(substitution_matrix(kappa))


def f81(num_tokens: int = 4, base_frequencies: Sequence[float] | None = None) -> DenseGraph:
    _check(num_tokens)
    return DenseGraph(substitution_matrix(1.0, base_frequencies))


def hky85(num_tokens: int = 4, kappa: float = 2.0, base_frequencies: Sequence[float] | None = None) -> DenseGraph:
    _check(num_tokens)
    return DenseGraph(substitution_matrix(kappa, base_frequencies))
