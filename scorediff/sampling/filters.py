"""Temperature and nucleus (top-p) filtering of categorical distributions before a draw."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import InputError


def check_temperature_top_p(temperature: float, top_p: float) -> None:
    """Raise ``InputError`` unless ``temperature`` is finite and > 0 and ``0 < top_p <= 1``."""
    if not 0 < temperature < float("inf"):  # inf would flatten every law to uniform; nan fails every comparison
        raise InputError(f"temperature must be finite and > 0; got {temperature}")
    if not 0 < top_p <= 1:
        raise InputError(f"top_p must be in (0, 1]; got {top_p}")


def temper(log_probs: Tensor, temperature: float = 1.0, top_p: float = 1.0) -> Tensor:
    """Probabilities ``softmax(log_probs / temperature)`` restricted to the nucleus, float64 (..., V).

    The nucleus is the smallest set of most likely entries whose probability reaches ``top_p`` (Holtzman et
    al. 2020); the rest are set to 0 and the remaining probabilities renormalised. ``temperature = 1`` and
    ``top_p = 1`` leave the distribution as it is.

    Args:
        log_probs (Tensor): float, shape (..., V); ``-inf`` marks impossible entries.
        temperature (float): > 0; below 1 sharpens, above 1 flattens.
        top_p (float): in (0, 1].
    """
    check_temperature_top_p(temperature, top_p)
    probs = torch.softmax(log_probs.double() / temperature, dim=-1)
    if top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(-1) - sorted_probs  # mass of the entries ranked above each one
        keep_sorted = before < top_p  # the first entry is always kept
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
        probs = torch.where(keep, probs, 0.0)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs
