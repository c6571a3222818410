"""The exact concrete score of a small distribution over whole sequences, computed by enumeration.

For tests, demos and debugging samplers: it fits the ``ScoreFn`` contract, so ``sample`` and
``elbo`` run on it exactly as on a trained network. Cost is ``vocab_size ** seq_len`` per noise level.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .errors import InputError
from .graphs import Graph


class ExactScore:
    """``log p_t(x with x_i := y) - log p_t(x)`` for a data distribution given as a full table.

    The noised marginal is built with ``torch.linalg.matrix_exp`` of the graph's dense rate matrix,
    independently of the graph's closed-form transitions.

    Args:
        graph (Graph): forward process; its dense ``rate_matrix`` must fit in memory.
        data_probs (Tensor): probabilities of every clean sequence, shape ``(num_tokens,) * seq_len``.
    """

    def __init__(self, graph: Graph, data_probs: Tensor):
        data_probs = torch.as_tensor(data_probs, dtype=torch.float64)
        if any(size != graph.num_tokens for size in data_probs.shape):
            raise InputError(
                f"data_probs must have shape ({graph.num_tokens},) * seq_len; got {tuple(data_probs.shape)}"
            )
        if (data_probs < 0).any() or abs(float(data_probs.sum()) - 1) > 1e-9:
            raise InputError("data_probs must be non-negative and sum to 1")
        self.graph = graph
        self.data_probs = data_probs
        self.seq_len = data_probs.dim()
        self._strides = graph.vocab_size ** torch.arange(self.seq_len - 1, -1, -1)  # (L,) row-major

    def marginal(self, sigma_bar: Tensor | float) -> Tensor:
        """``p_t`` over every noised sequence, float64, shape ``sigma_bar.shape + (vocab_size,) * seq_len``."""
        sigma_bar = torch.as_tensor(sigma_bar, dtype=torch.float64)
        q = self.graph.rate_matrix(torch.float64)
        kernel = torch.linalg.matrix_exp(sigma_bar.reshape(-1, 1, 1) * q)[..., : self.graph.num_tokens]  # (U, V, N)
        letters = "abcdefghijklmnopqrstvwxyz"[: self.seq_len]
        probs = self.data_probs.expand(kernel.shape[0], *self.data_probs.shape)  # (U, N, ..., N)
        for axis, letter in enumerate(letters):
            out = letters[:axis] + "Z" + letters[axis + 1 :]
            probs = torch.einsum(f"uZ{letter},u{letters}->u{out}", kernel, probs)
        return probs.reshape(*sigma_bar.shape, *probs.shape[1:])

    def __call__(self, x_t: Tensor, sigma_bar: Tensor) -> Tensor:
        """``log_score``, float64 (B, L, vocab_size), 0 at each current token."""
        vocab_size = self.graph.vocab_size
        strides = self._strides.to(x_t.device)
        index = (x_t * strides).sum(-1)  # (B,) flat index of each sequence
        delta = (torch.arange(vocab_size, device=x_t.device)[None, None, :] - x_t[..., None]) * strides[:, None]
        neighbours = index[:, None, None] + delta  # (B, L, V)
        sigma_bar = torch.as_tensor(sigma_bar, dtype=torch.float64).reshape(-1).expand(x_t.shape[0])
        values, which = torch.unique(sigma_bar.cpu(), return_inverse=True)
        out = torch.empty(x_t.shape + (vocab_size,), dtype=torch.float64, device=x_t.device)
        chunk = max(1, 2**22 // vocab_size**self.seq_len)  # bound the memory of the marginal tables
        for first in range(0, len(values), chunk):
            log_p = self.marginal(values[first : first + chunk]).reshape(-1, vocab_size**self.seq_len).log()
            rows = ((which >= first) & (which < first + chunk)).to(x_t.device)
            table = log_p.to(x_t.device)[which.to(x_t.device)[rows] - first]  # (b, V^L)
            out[rows] = table.gather(1, neighbours[rows].flatten(1)).view(-1, *x_t.shape[1:], vocab_size)
            out[rows] -= table.gather(1, index[rows, None])[:, :, None]
        return out
