"""One reverse step from ``t`` to ``t_next < t``: every position moves in parallel.

Each predictor turns the model's ratios into per-position categorical probabilities and draws from
them in float64 (``graphs.base.sample_from``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from ..graphs import Graph
from ..graphs.base import sample_from
from ..schedules import NoiseSchedule
from ..types import ScoreFn
from .filters import temper


def _batch_times(t: float, x: Tensor) -> Tensor:
    return torch.full((x.shape[0],), float(t), dtype=torch.float64, device=x.device)


class Predictor(ABC):
    """A reverse-time update rule."""

    name: str

    @abstractmethod
    def step_probs(
        self, score_fn: ScoreFn, graph: Graph, schedule: NoiseSchedule, x: Tensor, t: float, t_next: float
    ) -> Tensor:
        """Unnormalised probabilities of ``x_{t_next}`` per position, float (B, L, vocab_size)."""

    def step(
        self,
        score_fn: ScoreFn,
        graph: Graph,
        schedule: NoiseSchedule,
        x: Tensor,
        t: float,
        t_next: float,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        top_p: float = 1.0,
    ) -> Tensor:
        """Draw ``x_{t_next}`` given ``x_t``; int64 (B, L). ``temperature`` and ``top_p`` shape where a position
        moves to, not whether it moves (see ``temper_moves``)."""
        probs = self.step_probs(score_fn, graph, schedule, x, t, t_next).clamp_min(0.0)
        return sample_from(temper_moves(probs, x, temperature, top_p), generator)


class EulerPredictor(Predictor):
    """Tau-leaping: ``x_{t - dt} ~ Cat(onehot(x_t) + dt sigma(t) Rbar(x_t, .))`` (SEDD, eq. 17).

    When ``dt sigma(t)`` is large the stay probability would go negative; it is clipped at 0.
    """

    name = "euler"

    def step_probs(self, score_fn, graph, schedule, x, t, t_next):
        times = _batch_times(t, x)
        sigma_bar, sigma = schedule.total(times), schedule.rate(times)
        score = score_fn(x, sigma_bar).exp()  # (B, L, V)
        step = ((t - t_next) * sigma).to(score.dtype)[:, None, None]
        return F.one_hot(x, graph.vocab_size).to(score.dtype) + step * graph.reverse_rate(x, score)


class AnalyticPredictor(Predictor):
    """Tweedie tau-leaping (SEDD, Theorem 4.2), exact for a single position.

    .. math:: p(x_{t-dt} = y) \\propto [\\exp(-\\Delta Q) s]_y \\, \\exp(\\Delta Q)(x_t, y),
              \\quad \\Delta = \\bar\\sigma(t) - \\bar\\sigma(t - dt)
    """

    name = "analytic"

    def step_probs(self, score_fn, graph, schedule, x, t, t_next):
        sigma_bar = schedule.total(_batch_times(t, x))
        delta = sigma_bar - schedule.total(_batch_times(t_next, x))
        score = score_fn(x, sigma_bar).exp()  # (B, L, V)
        return graph.staggered_score(score, delta) * graph.transp_transition(x, delta.to(score.dtype))


def temper_moves(probs: Tensor, x: Tensor, temperature: float = 1.0, top_p: float = 1.0) -> Tensor:
    """Apply temperature and top-p to the distribution over the states a position can move to.

    The chance of staying at ``x`` and the total chance of moving are kept; only which state a move goes to
    is sharpened (``temperature < 1``) or cut to its nucleus. At a mask of the absorbing graph that is the
    denoising distribution ``p(x_0^i | x_t)``; ``temperature = top_p = 1`` changes nothing.

    Args:
        probs (Tensor): non-negative, unnormalised, float (B, L, V).
        x (Tensor): int64 (B, L), the current states.
    """
    if temperature == 1.0 and top_p == 1.0:
        return probs
    probs = probs.double()
    stay = probs.gather(-1, x[..., None])  # (B, L, 1)
    move = probs.scatter(-1, x[..., None], 0.0)
    total = move.sum(-1, keepdim=True)
    shaped = temper(move.log(), temperature, top_p).nan_to_num(0.0) * total  # a row with no move stays 0
    return shaped.scatter(-1, x[..., None], stay)


PREDICTORS: dict[str, type[Predictor]] = {"analytic": AnalyticPredictor, "euler": EulerPredictor}
#: Every name ``sample(predictor=...)`` takes: the step rules above and the first-hitting sampler.
SAMPLERS = ("analytic", "euler", "first_hitting")


def get_predictor(name: str) -> Predictor:
    """Build a registered predictor by name (``"analytic"`` or ``"euler"``)."""
    if name not in PREDICTORS:
        raise InputError(f"unknown predictor {name!r}; expected one of {sorted(PREDICTORS)}")
    return PREDICTORS[name]()


def denoise_probs(score_fn: ScoreFn, graph: Graph, schedule: NoiseSchedule, x: Tensor, t: float) -> Tensor:
    """Probabilities of ``x_0`` given ``x_t`` at the last time ``t``: an analytic step that removes all noise.

    A masked position is never left masked: the mask column is set to 0.
    """
    sigma_bar = schedule.total(_batch_times(t, x))
    score = score_fn(x, sigma_bar).exp()  # (B, L, V)
    probs = graph.staggered_score(score, sigma_bar) * graph.transp_transition(x, sigma_bar.to(score.dtype))
    if graph.mask_id is not None:
        probs = probs.index_fill(-1, torch.tensor([graph.mask_id], device=x.device), 0.0)
    return probs
