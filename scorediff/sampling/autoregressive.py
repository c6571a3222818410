"""Left-to-right generation from a next-token model, with or without a KV cache.

The model contract (``scorediff.model.CausalTransformer`` fits it): ``model(tokens, cache)`` with ``tokens``
int64 (B, T) returns float (B, T, V) next-token log-probabilities; ``model.new_cache(batch_size, max_len,
device)`` gives a cache that ``model`` extends; ``model.bos_id`` starts every sequence.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import InputError
from ..graphs.base import sample_from
from .filters import check_temperature_top_p, temper


@torch.inference_mode()
def sample_autoregressive(
    model,
    shape: tuple[int, int],
    *,
    prompt: Tensor | None = None,
    temperature: float = 1.0,
    top_p: float = 1.0,
    greedy: bool = False,
    use_cache: bool = True,
    fixed: tuple[Tensor, Tensor] | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Draw ``shape = (batch_size, length)`` tokens one position at a time.

    With ``use_cache`` each new token costs one position of work (keys and values of earlier positions are
    kept); without it the whole prefix is recomputed at every position. Both draw the same tokens for the
    same ``generator``: the draws are made in float64 in the same order.

    Args:
        model (nn.Module): a next-token model (see the module docstring).
        shape (tuple[int, int]): ``(batch_size, length)``; ``length`` at most the model's context.
        prompt (Tensor | None): int64 (batch_size, P), the first ``P <= length`` tokens, kept as they are.
        temperature (float): > 0, divides the log-probabilities.
        top_p (float): in (0, 1], nucleus sampling.
        greedy (bool): take the most probable token at every position instead of drawing one.
        use_cache (bool): keep keys and values between positions.
        fixed (tuple[Tensor, Tensor] | None): ``(tokens, mask)``, int64 and bool (batch_size, length): where
            ``mask`` is True the token of ``tokens`` is written instead of a draw. The model conditions on a fixed
            token from its position on, not before (a left-to-right model cannot look ahead); the prompt is the
            fast path for fixed tokens at the start.
        generator (torch.Generator | None): source of all randomness.
        device: where to generate (default: the prompt's device, else the CPU).

    Returns:
        Tensor: int64 (batch_size, length).
    """
    batch_size, length = int(shape[0]), int(shape[1])
    if batch_size < 1 or length < 1:
        raise InputError(f"shape must be (batch_size, length) with both >= 1; got {tuple(shape)}")
    check_temperature_top_p(temperature, top_p)
    if prompt is not None and (prompt.dim() != 2 or prompt.shape[0] != batch_size or prompt.shape[1] > length):
        raise InputError(f"prompt must be int64 (batch_size, P <= {length}); got shape {tuple(prompt.shape)}")
    if fixed is not None and any(part.shape != (batch_size, length) for part in fixed):
        raise InputError(f"fixed tokens and mask must be ({batch_size}, {length}); got {tuple(fixed[0].shape)}")
    device = device if device is not None else (prompt.device if prompt is not None else "cpu")
    bos = torch.full((batch_size, 1), model.bos_id, dtype=torch.int64, device=device)
    tokens = torch.cat([bos, prompt.to(device)], dim=1) if prompt is not None else bos  # (B, 1 + P)
    if fixed is not None:
        fixed = (fixed[0].to(device), fixed[1].to(device))
    cache = model.new_cache(batch_size, length, device=device) if use_cache else None
    fresh = tokens  # the positions the model has not seen yet
    while tokens.shape[1] <= length:
        log_probs = model(fresh if use_cache else tokens, cache)[:, -1]  # (B, V)
        probs = temper(log_probs, temperature, top_p)  # (B, V)
        draw = (probs.argmax(-1) if greedy else sample_from(probs, generator))[:, None]  # (B, 1)
        if fixed is not None:
            at = tokens.shape[1] - 1  # the position being drawn, without the start token
            draw = torch.where(fixed[1][:, at : at + 1], fixed[0][:, at : at + 1], draw)
        tokens = torch.cat([tokens, draw], dim=1)
        fresh = draw
    return tokens[:, 1:]
