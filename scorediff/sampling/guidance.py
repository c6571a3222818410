"""Classifier-free guidance for concrete scores.

A conditional model ``s(x, c)`` and the unconditional one ``s(x, null)`` (one network trained with label
dropout) are combined at every position and candidate token ``y`` as

.. math:: \\log s^w_y = (1 + w) \\log s_y(x, c) - w \\log s_y(x, \\varnothing)

at every noise level: the ratios of ``p_t(x | c)^{1+w} p_t(x)^{-w}``, which tilts the model towards sequences
the class explains better than the rest (``p_t(c | x)^{1+w}``); as in continuous diffusion, the chain run with
them is not an exact sample of the tilted clean law for ``w != 0`` (Nisonoff et al. 2024 guide the rates the same
way). ``w = 0`` is the conditional model and ``w = -1`` the unconditional one, exactly. The combination is used
as the reverse rate needs it:

- scores of any graph (``guide_log_scores``) enter the reverse rates as they are; the entry of the current
  token stays 0;
- a time-independent absorbing network's clean-token distributions (``guide_log_probs``) are renormalised over
  the data tokens, so the guided model is again a distribution and the mask keeps probability 0.

``labelled`` calls a conditional network at one class, and when guided, at the null label (-1) in the same
batch; ``check_label`` refuses a class the network does not know.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..errors import InputError
from ..types import ScoreFn


def guide_log_scores(conditional: Tensor, unconditional: Tensor, weight: float) -> Tensor:
    """``(1 + w) log s_c - w log s_u`` for log scores (..., V); entries not finite in either stay ``-inf``."""
    if weight == 0:
        return conditional
    finite = torch.isfinite(conditional) & torch.isfinite(unconditional)
    mixed = (1 + weight) * conditional - weight * unconditional
    return torch.where(finite, mixed, torch.full_like(mixed, -torch.inf))


def guide_log_probs(conditional: Tensor, unconditional: Tensor, weight: float) -> Tensor:
    """The guided clean-token log-distribution (..., V), renormalised; ``-inf`` (the mask) stays ``-inf``."""
    if weight == 0:
        return conditional
    return guide_log_scores(conditional, unconditional, weight).log_softmax(-1)


def guided(conditional: ScoreFn, unconditional: ScoreFn, weight: float) -> ScoreFn:
    """A ``ScoreFn`` that guides ``conditional`` away from ``unconditional`` by ``weight``."""

    def score(x_t: Tensor, sigma_bar: Tensor) -> Tensor:
        if weight == 0:
            return conditional(x_t, sigma_bar)
        return guide_log_scores(conditional(x_t, sigma_bar), unconditional(x_t, sigma_bar), weight)

    return score


def guided_log_probs(
    conditional: Callable[[Tensor], Tensor], unconditional: Callable[[Tensor], Tensor], weight: float
) -> Callable[[Tensor], Tensor]:
    """The same for clean-token log-distributions ``x_t -> (B, L, V)`` (what ``TimeIndependentScore`` takes)."""

    def log_probs(x_t: Tensor) -> Tensor:
        if weight == 0:
            return conditional(x_t)
        return guide_log_probs(conditional(x_t), unconditional(x_t), weight)

    return log_probs


def check_label(model: torch.nn.Module, label: int | None, guidance: float) -> None:
    """A class the model knows (or None), and guidance only with a class."""
    num_labels = getattr(getattr(model, "config", None), "num_labels", 0)
    if label is None and guidance:
        raise InputError("guidance needs a label")
    if label is not None and not 0 <= int(label) < num_labels:
        known = f"labels 0..{num_labels - 1}" if num_labels else "no labels (an unconditional model)"
        raise InputError(f"label {label} is not one of the model's: it knows {known}")


def labelled(network, label: int, guidance: float, combine):
    """``network(x, *rest, label=...)`` at one class ``label``; guided: with the null label in the same call."""

    def call(x: Tensor, *rest: Tensor) -> Tensor:
        rows = len(x)
        labels = torch.full((rows,), label, dtype=torch.int64, device=x.device)
        if guidance == 0:
            return network(x, *rest, label=labels)
        both = network(
            torch.cat([x, x]),
            *(torch.cat([r, r]) for r in rest),
            label=torch.cat([labels, torch.full_like(labels, -1)]),
        )
        return combine(both[:rows], both[rows:], guidance)

    return call
