"""Generation longer than the model's context, block by block (semi-autoregressive, as MDLM does).

The first window is generated whole; each later window slides forward by ``block`` positions, keeps the
``context - block`` tokens before it as given, and fills the new ones. It works for any model that can fill a
window given some of its tokens: a diffusion model (any given positions) or an autoregressive one (a prefix).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from ..errors import InputError

#: ``fill(tokens, given) -> tokens``: int64 and bool (B, W), W at most the context; returns the window filled,
#: ``tokens[given]`` unchanged.
FillFn = Callable[[Tensor, Tensor], Tensor]


def generate_in_blocks(fill: FillFn, tokens: Tensor, given: Tensor, context: int, block: int) -> Tensor:
    """Fill every position of ``tokens`` (B, L) where ``given`` is False, ``context`` positions at a time.

    Args:
        fill (FillFn): fills one window.
        tokens (Tensor): int64 (B, L); values where ``given`` is False are ignored.
        given (Tensor): bool (B, L), the fixed tokens.
        context (int): the longest window ``fill`` takes.
        block (int): new positions per window after the first, in ``[1, context]``.

    Returns:
        Tensor: int64 (B, L).
    """
    length = tokens.shape[1]
    if not 1 <= block <= context:
        raise InputError(f"block must be in [1, {context}]; got {block}")
    tokens, done = tokens.clone(), given.clone()
    end = min(context, length)
    while True:
        start = max(0, end - context)
        window = slice(start, end)
        tokens[:, window] = fill(tokens[:, window], done[:, window])
        done[:, window] = True
        if end == length:
            return tokens
        end = min(length, end + block)


def default_block(context: int) -> int:
    """Half the context: each new block sees as many tokens before it as it has."""
    return max(1, context // 2)
