"""Brute-force references over state spaces small enough to enumerate (float64)."""

import itertools
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


class TokenCache:
    """What an exact block denoiser caches: the finished tokens themselves."""

    def __init__(self, tokens: torch.Tensor):
        self.tokens = tokens
        self.length = tokens.shape[1]

    def select(self, rows: torch.Tensor, room: int) -> "TokenCache":
        return TokenCache(self.tokens[rows])


class ExactBlockDenoiser:
    """The exact block denoiser of a distribution ``probs`` over ``num_tokens ** seq_len`` sequences:
    ``p(x_0^i = y | the unmasked tokens of its block, the clean blocks before it)``, float64, in the two forms
    a ``BlockDiffusionTransformer`` has (``(x_t, x_0)`` for training and scoring, a cache for sampling)."""

    def __init__(self, probs: torch.Tensor, block_size: int):
        self.num_tokens, self.seq_len = probs.shape[0], probs.dim()
        self.probs = probs.reshape(-1).double()
        self.states = all_sequences(self.num_tokens, self.seq_len)  # (S, L)
        self.mask_id = self.num_tokens
        self.config = type("Config", (), {"block_size": block_size, "seq_len": self.seq_len})()

    def conditionals(self, tokens: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """``log p(x_i = y | x_j = tokens_j where known)``, (B, L, N + 1) with ``-inf`` at the mask."""
        consistent = ((self.states[None] == tokens[:, None]) | ~known[:, None]).all(-1)  # (B, S)
        one_hot = torch.nn.functional.one_hot(self.states, self.num_tokens).double()  # (S, L, N)
        marginal = torch.einsum("bs,sln->bln", self.probs * consistent, one_hot)
        out = torch.full((*tokens.shape, self.num_tokens + 1), -torch.inf, dtype=torch.float64)
        out[..., : self.num_tokens] = (marginal / marginal.sum(-1, keepdim=True)).log()
        return out

    def __call__(self, x_t: torch.Tensor, x_0: torch.Tensor, label=None) -> torch.Tensor:
        block = torch.arange(self.seq_len) // self.config.block_size
        out = torch.empty((*x_t.shape, self.num_tokens + 1), dtype=torch.float64)
        for b in range(int(block.max()) + 1):
            tokens = torch.where(block < b, x_0, x_t)
            known = (block < b) | ((block == b) & (x_t != self.mask_id))
            out[:, block == b] = self.conditionals(tokens, known)[:, block == b]
        return out

    def new_cache(self, batch_size: int, max_len: int, device=None) -> TokenCache:
        return TokenCache(torch.zeros(batch_size, 0, dtype=torch.int64))

    def block_log_probs(self, x_t: torch.Tensor, cache: TokenCache, label=None, clean=None) -> torch.Tensor:
        if clean is not None:
            self.extend_cache(clean, cache)
        start, end = cache.length, cache.length + x_t.shape[1]
        tokens = torch.zeros(x_t.shape[0], self.seq_len, dtype=torch.int64)
        tokens[:, :end] = torch.cat([cache.tokens, x_t], dim=1)
        known = torch.zeros_like(tokens, dtype=torch.bool)
        known[:, :start] = True
        known[:, start:end] = x_t != self.mask_id
        return self.conditionals(tokens, known)[:, start:end]

    def extend_cache(self, x_0: torch.Tensor, cache: TokenCache, label=None) -> None:
        cache.tokens = torch.cat([cache.tokens, x_0], dim=1)
        cache.length = cache.tokens.shape[1]


def block_bound(
    denoiser, x_0: torch.Tensor, block_size: int, mask_id: int, given: tuple[int, ...] = ()
) -> torch.Tensor:
    """The block diffusion bound of every row of ``x_0`` (B, L), by enumerating every mask of every block:
    ``sum_b mean_k (n / k) mean_{|M| = k} sum_{i in M} -log p(x_0^i | ...)``, float64 (B,), ``M`` among the ``n``
    positions of the block not in ``given`` (the conditional bound given those positions of every row)."""
    length = x_0.shape[1]
    total = torch.zeros(x_0.shape[0], dtype=torch.float64)
    for start in range(0, length, block_size):
        free = [i for i in range(start, start + block_size) if i not in given]
        for k in range(1, len(free) + 1):
            subsets = list(itertools.combinations(free, k))
            for subset in subsets:
                x_t = x_0.clone()
                x_t[:, list(subset)] = mask_id
                log_p = denoiser(x_t, x_0).double().gather(-1, x_0[..., None]).squeeze(-1)  # (B, L)
                total -= (len(free) / k) * log_p[:, list(subset)].sum(-1) / len(subsets) / len(free)
    return total


def block_order_law(denoiser, states: torch.Tensor, block_size: int, mask_id: int) -> torch.Tensor:
    """The law of the first-hitting block sampler of ``denoiser``: every block filled one position at a time in a
    uniformly random order, each from its conditional; probabilities of ``states`` (S, L), float64 (S,)."""
    law = torch.ones(states.shape[0], dtype=torch.float64)
    for start in range(0, states.shape[1], block_size):
        positions = list(range(start, start + block_size))
        block_law = torch.zeros_like(law)
        orders = list(itertools.permutations(positions))
        for order in orders:
            x_t = states.clone()
            x_t[:, positions] = mask_id
            probability = torch.ones_like(law)
            for i in order:
                log_p = denoiser(x_t, states).double()[:, i].gather(-1, states[:, i : i + 1]).squeeze(-1)
                probability *= log_p.exp()
                x_t[:, i] = states[:, i]
            block_law += probability / len(orders)
        law *= block_law
    return law
