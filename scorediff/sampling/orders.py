r"""Decoding in an order the model chooses: commit the masked positions the denoiser is surest of first.

A masked diffusion model's denoiser gives ``p_theta(x_0^i | x_t)`` at every masked position at once, so a
decoder may pick *which* positions to fill next. The random order (one uniformly chosen position per call, its
token drawn from the denoiser) is the first-hitting sampler, an exact sampler of the model's law. An adaptive
order instead ranks the masked positions by a score of their denoising distributions and commits the best
``k`` per network call (Kim et al. 2025, arXiv 2502.06768; LLaDA's low-confidence remasking, Nie et al. 2025):

- ``confidence``: the probability of the token that would be committed (the top-1 probability when greedy);
- ``margin``: the gap between the two most probable tokens;
- ``entropy``: the negative entropy of the distribution.

**An adaptive order is not a sampler of the model's law.** It is a search heuristic: with greedy tokens and
``k = 1`` the confidence order follows the path of most probable single-token commitments, which helps on
problems with one right answer (puzzles) and lowers diversity on open-ended text.

**End tokens wait for the answer before them.** A prompted model pads every answer with its end token, so at
the far positions of an answer the end token is nearly certain whatever the answer is: there it is the surest
cell of all, an adaptive order commits it first, and each end committed makes an end likelier just before it,
until the whole answer is ends (LLaDA meets the same trap; its decoder fills semi-autoregressive blocks and can
rank end tokens last). With ``end_token`` an order commits the end token at a position only while every masked
position before it takes the end token too: an end means "the answer stops here", a claim about the positions
before it, so it is made where the answer is written up to it, as an autoregressive model makes it; the padding
after an answer's last token is then one run of ends, committed ``k`` a call. Other tokens are ranked as before,
and the first masked position of a row may always take any token, so every call still commits at least one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..errors import InputError
from ..graphs.base import sample_from
from .filters import temper

#: The decoding orders; ``random`` is the exact one.
ORDERS = ("random", "confidence", "margin", "entropy")

#: ``log_probs_fn(x) -> log p_theta(x_0 | x)``: int64 (B, L) to float (B, L, V) (only the data tokens are read).
LogProbsFn = Callable[[Tensor], Tensor]


def check_order(order: str, tokens_per_step: int | None, threshold: float | None) -> None:
    """A known order, at least one token per step and a threshold in (0, 1] (confidence only)."""
    if order not in ORDERS:
        raise InputError(f"unknown order {order!r}; expected one of {', '.join(ORDERS)}")
    if tokens_per_step is not None and int(tokens_per_step) < 1:
        raise InputError(f"tokens_per_step must be >= 1; got {tokens_per_step}")
    if threshold is not None and (order != "confidence" or not 0 < threshold <= 1):
        raise InputError(f"threshold applies to the confidence order, in (0, 1]; got {threshold} with {order!r}")


def tokens_per_call(tokens_per_step: int | None, given: Tensor, steps: int) -> int:
    """``tokens_per_step``, or when it is None the masks of the fullest row (``~given``, (B, L)) spread over
    ``steps`` calls."""
    return max(1, min(tokens_per_step or -(-int((~given).sum(-1).max()) // max(1, steps)), given.shape[-1]))


def order_scores(log_p: Tensor, chosen: Tensor, order: str, generator: torch.Generator | None) -> Tensor:
    """How sure the denoiser is at each position (higher: commit sooner), float64 (B, L).

    Args:
        log_p (Tensor): float, shape (B, L, N), log-probabilities over the data tokens.
        chosen (Tensor): int64, shape (B, L), the token each position would take.
        order (str): one of ``ORDERS``.
    """
    log_p = log_p.double()
    if order == "confidence":
        return log_p.gather(-1, chosen[..., None]).squeeze(-1).exp()
    if order == "margin":
        top = log_p.topk(min(2, log_p.shape[-1]), dim=-1).values.exp()  # (B, L, 2)
        return top[..., 0] - (top[..., 1] if top.shape[-1] > 1 else 0.0)
    if order == "entropy":
        return (log_p.exp() * log_p).nan_to_num(nan=0.0).sum(-1)  # -H: 0 * log 0 counts as 0
    return torch.rand(chosen.shape, dtype=torch.float64, device=chosen.device, generator=generator)


def _pick(scores: Tensor, masked: Tensor, count: Tensor, threshold: float | None) -> Tensor:
    """The ``count`` (B,) best-scoring masked positions of each row, and every one at or above ``threshold``."""
    scores = torch.where(masked, scores, -math.inf)
    rank = scores.argsort(-1, descending=True).argsort(-1)  # (B, L): 0 for the best
    picked = rank < count[:, None]
    if threshold is not None:
        picked |= scores >= threshold
    return picked & masked


@torch.no_grad()
def decode_in_order(
    log_probs_fn: LogProbsFn,
    x: Tensor,
    mask_id: int,
    num_tokens: int,
    *,
    order: str = "confidence",
    tokens_per_step: int = 1,
    threshold: float | None = None,
    greedy: bool = True,
    temperature: float = 1.0,
    remask_rounds: int = 0,
    remask_tokens: int = 1,
    end_token: int | None = None,
    given: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, int]:
    r"""Fill every mask of ``x`` a few positions per network call, in the order ``order`` ranks them.

    At each call the denoiser's distribution at every masked position gives a token (its argmax when
    ``greedy``, else a draw at ``temperature``) and a score (``order_scores``); the ``tokens_per_step`` masked
    positions of highest score in each row are committed (with ``threshold``, also every position whose
    confidence reaches it). A row with ``n`` masks takes ``ceil(n / tokens_per_step)`` calls without a
    threshold, fewer with one.

    Remasking (ReMDM's confidence scheme, Wang et al. 2025, made deterministic): after the masks are filled,
    each of ``remask_rounds`` rounds masks again the ``remask_tokens`` filled positions of each row whose
    token was least probable when it was committed, and fills them as before, now seeing every other token.
    Without it committed tokens never change.

    Args:
        log_probs_fn (LogProbsFn): the denoiser.
        x (Tensor): int64, shape (B, L); ``mask_id`` where tokens are to be filled.
        mask_id (int): the mask state.
        num_tokens (int): data tokens (the first ``num_tokens`` entries of the denoiser's last dimension).
        order (str): ``random``, ``confidence``, ``margin`` or ``entropy``.
        tokens_per_step (int): positions committed per call and row.
        threshold (float | None): confidence order: also commit every position at least this sure.
        greedy (bool): commit the most probable token instead of a draw.
        temperature (float): of the draw when not ``greedy``.
        remask_rounds (int): rounds of remasking after the first fill; remask_tokens (int): positions per round.
        end_token (int | None): the token that ends (and pads) an answer, committed at a position only while every
            masked position before it takes it too (None: ranked as any other token).
        given (Tensor | None): bool, shape (B, L), positions never changed (even if they hold the mask).
        generator (torch.Generator | None): for the draws and the random order.

    Returns:
        tuple[Tensor, int]: the filled tokens, int64 (B, L), and the number of network calls.
    """
    check_order(order, tokens_per_step, threshold)
    if int(remask_rounds) < 0 or int(remask_tokens) < 1:
        raise InputError(f"remasking needs rounds >= 0 and tokens >= 1; got {remask_rounds} and {remask_tokens}")
    if int(remask_rounds) > x.shape[-1]:  # each round costs a network call; more than one per position is waste
        raise InputError(f"remask_rounds must be at most the window's {x.shape[-1]} positions; got {remask_rounds}")
    # more positions per call than the window holds means all of them (and keeps a huge int away from torch)
    tokens_per_step = min(int(tokens_per_step), x.shape[-1])
    if end_token is not None and not 0 <= int(end_token) < num_tokens:
        raise InputError(f"end_token must be a data token, in [0, {num_tokens}); got {end_token}")
    x = x.clone()
    masked = x == mask_id
    if given is not None:
        masked &= ~given
    filled = masked.clone()
    sureness = torch.zeros(x.shape, dtype=torch.float64, device=x.device)  # each token's probability when committed
    rule = {"order": order, "tokens_per_step": tokens_per_step, "threshold": threshold, "greedy": greedy,
            "temperature": temperature, "end_token": end_token, "generator": generator}  # fmt: skip
    calls = _fill(log_probs_fn, x, masked, sureness, num_tokens, **rule)
    for _ in range(int(remask_rounds)):
        count = torch.full((x.shape[0],), int(remask_tokens), device=x.device)
        masked = _pick(-sureness, filled, count.clamp_max(filled.sum(-1)), None)
        x[masked] = mask_id
        calls += _fill(log_probs_fn, x, masked, sureness, num_tokens, **rule)
    return x, calls


def _fill(log_probs_fn, x: Tensor, masked: Tensor, sureness: Tensor, num_tokens: int, *, order, tokens_per_step,
          threshold, greedy, temperature, end_token, generator) -> int:  # fmt: skip
    """Commit the ``masked`` positions of ``x`` in place, recording each token's probability in ``sureness``;
    the number of network calls."""
    masked = masked.clone()
    calls = 0
    while masked.any():
        log_p = log_probs_fn(x)[..., :num_tokens].double()  # (B, L, N)
        calls += 1
        log_p = log_p - log_p.logsumexp(-1, keepdim=True)
        chosen = log_p.argmax(-1) if greedy else sample_from(temper(log_p, temperature), generator)  # (B, L)
        ready = _ready(masked, chosen, end_token)
        count = ready.sum(-1).clamp_max(int(tokens_per_step))  # (B,)
        picked = _pick(order_scores(log_p, chosen, order, generator), ready, count, threshold)
        x[picked] = chosen[picked]
        sureness[picked] = log_p.gather(-1, chosen[..., None]).squeeze(-1).exp()[picked]
        masked &= ~picked
    return calls


def _ready(masked: Tensor, chosen: Tensor, end_token: int | None) -> Tensor:
    """The ``masked`` (B, L) positions that may be committed to their ``chosen`` (B, L) token now: all of them, but
    a position whose token is ``end_token`` while a masked position before it in its row takes another token."""
    if end_token is None:
        return masked
    end = chosen == end_token
    writing = (masked & ~end).cumsum(-1) > 0  # (B, L): at or after a masked position that takes another token
    return masked & ~(end & writing)
