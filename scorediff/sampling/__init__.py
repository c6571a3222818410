"""Reverse-time samplers: predictors, the final denoiser, conditioning and the sampling loop."""

from .predictors import PREDICTORS, AnalyticPredictor, EulerPredictor, Predictor, denoise_probs, get_predictor
from .sampler import SampleTrajectory, sample

__all__ = [
    "PREDICTORS",
    "AnalyticPredictor",
    "EulerPredictor",
    "Predictor",
    "SampleTrajectory",
    "denoise_probs",
    "get_predictor",
    "sample",
]
