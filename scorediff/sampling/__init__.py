"""Reverse-time samplers: predictors, the first-hitting sampler, caching, the final denoiser, conditioning,
temperature and nucleus filtering, generation longer than the context, and the sampling loop."""

from .autoregressive import sample_autoregressive
from .blocks import generate_in_blocks
from .cache import TimeIndependentScore
from .filters import temper
from .first_hitting import sample_first_hitting
from .guidance import guide_log_probs, guide_log_scores, guided, guided_log_probs
from .predictors import (
    PREDICTORS,
    SAMPLERS,
    AnalyticPredictor,
    EulerPredictor,
    Predictor,
    denoise_probs,
    get_predictor,
    temper_moves,
)
from .sampler import SampleStats, SampleTrajectory, sample

__all__ = [
    "PREDICTORS",
    "SAMPLERS",
    "AnalyticPredictor",
    "EulerPredictor",
    "Predictor",
    "SampleStats",
    "SampleTrajectory",
    "TimeIndependentScore",
    "denoise_probs",
    "guide_log_probs",
    "guide_log_scores",
    "guided",
    "guided_log_probs",
    "generate_in_blocks",
    "get_predictor",
    "sample",
    "sample_autoregressive",
    "sample_first_hitting",
    "temper",
    "temper_moves",
]
