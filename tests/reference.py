"""Brute-force references over state spaces small enough to enumerate (float64)."""

import math

import torch

from scorediff import ExactScore, Graph


def as_tensor(entry: dict) -> torch.Tensor:
    """A ``{dtype, shape, data}`` array from the reference fixtures."""
    return torch.tensor(entry["data"], dtype=getattr(torch, entry["dtype"])).reshape(entry["shape"])


def random_data(num_tokens: int, seq_len: int, seed: int = 0, concentration: float = 1.0) -> torch.Tensor:
    """A full-support distribution over all ``num_tokens ** seq_len`` sequences, shape ``(num_tokens,) * seq_len``."""
    generator = torch.Generator().manual_seed(seed)
    gamma = torch._standard_gamma(torch.full((num_tokens**seq_len,), concentration, dtype=torch.float64), generator)
    probs = gamma.clamp_min(1e-6)
    return (probs / probs.sum()).reshape((num_tokens,) * seq_len)


def all_sequences(vocab_size: int, seq_len: int) -> torch.Tensor:
    """Every sequence in row-major order, int64 (vocab_size ** seq_len, seq_len)."""
    grids = torch.meshgrid(*[torch.arange(vocab_size)] * seq_len, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], -1)


def flat_index(x: torch.Tensor, vocab_size: int) -> torch.Tensor:
    strides = vocab_size ** torch.arange(x.shape[-1] - 1, -1, -1)
    return (x * strides).sum(-1)


def total_variation(samples: torch.Tensor, probs: torch.Tensor, vocab_size: int) -> float:
    counts = torch.bincount(flat_index(samples, vocab_size), minlength=probs.numel()).double()
    return 0.5 * float((counts / samples.shape[0] - probs.reshape(-1)).abs().sum())


def simpson(values: torch.Tensor, h: float) -> float:
    assert values.numel() % 2 == 1
    return float(h / 3 * (values[0] + values[-1] + 4 * values[1:-1:2].sum() + 2 * values[2:-1:2].sum()))


def expected_dse(graph: Graph, exact: ExactScore, x_0: torch.Tensor, sigma_bars: torch.Tensor) -> torch.Tensor:
    """``E_{x_t | x_0} sum_i DSE_i`` with the exact score at each noise level, by enumerating every ``x_t``."""
    states = all_sequences(graph.vocab_size, x_0.numel())  # (M, L)
    num = states.shape[0]
    x_t = states.repeat(sigma_bars.numel(), 1)  # (G * M, L)
    sigma = sigma_bars.repeat_interleave(num)  # (G * M,)
    clean = x_0.expand_as(x_t)
    weight = graph.transition(clean, sigma).gather(-1, x_t[..., None]).squeeze(-1).prod(-1)  # p(x_t | x_0)
    dse = graph.score_entropy(exact(x_t, sigma), sigma, x_t, clean).sum(-1)
    return (weight * torch.where(weight > 0, dse, 0.0)).reshape(-1, num).sum(-1)


def diffusion_integral(
    graph: Graph, exact: ExactScore, x_0: torch.Tensor, sigma_lo: float, sigma_hi: float, points: int = 1201
) -> float:
    """``int E_{x_t|x_0} sum_i DSE_i d sigma_bar`` from ``sigma_lo`` to ``sigma_hi`` (Simpson in log sigma_bar).

    Since ``d sigma_bar = sigma(t) dt`` this is the diffusion term of the bound, independent of the schedule
    that maps ``t`` to ``sigma_bar``. Integrating in ``v = log sigma_bar`` tames the ``log(1/sigma_bar)``
    behaviour of the integrand near the data; below ``1e-14`` the integral is negligible.
    """
    lo = math.log(max(sigma_lo, 1e-14))
    hi = math.log(sigma_hi)
    v = torch.linspace(lo, hi, points, dtype=torch.float64)
    s = v.exp()
    return simpson(expected_dse(graph, exact, x_0, s) * s, (hi - lo) / (points - 1))


class IndependentExactScore:
    """Exact score of a distribution whose positions are independent, ``probs`` (seq_len, num_tokens): any length."""

    def __init__(self, graph: Graph, probs: torch.Tensor):
        self.graph = graph
        self.probs = probs.to(torch.float64)

    def __call__(self, x_t: torch.Tensor, sigma_bar: torch.Tensor) -> torch.Tensor:
        kernel = torch.linalg.matrix_exp(sigma_bar.double()[:, None, None] * self.graph.rate_matrix())  # (B, V, V)
        kernel = kernel[..., : self.graph.num_tokens]  # (B, V, N)
        log_marginal = torch.einsum("byn,ln->bly", kernel, self.probs).log()  # (B, L, V)
        return log_marginal - log_marginal.gather(-1, x_t[..., None])
