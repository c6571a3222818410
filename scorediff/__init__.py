"""scorediff: Score Entropy Discrete Diffusion (SEDD) in PyTorch.

Conventions (shared by every module):

- ``t`` in [0, 1], ``t = 0`` is the data, ``t = 1`` the noise. ``sigma_bar = schedule.total(t)`` is the total
  noise, ``sigma = schedule.rate(t)`` its rate.
- Rate matrices use the column convention: ``Q[y, x]`` is the rate of ``x -> y``; ``graph.transition(x, s)``
  is column ``x`` of ``exp(s Q)``.
- A ``ScoreFn`` maps ``x_t`` int64 (B, L) and ``sigma_bar`` float (B,) to ``log_score`` float (B, L, V),
  0 at the current token. ``AbsorbingGraph(N)`` has ``vocab_size == N + 1`` and ``mask_id == N``.
- Losses and bounds are in nats per sequence; divide by ``seq_len`` for nats per token.
"""

from .config import RunConfig, load_config
from .errors import InputError, ScorediffError
from .exact import ExactScore
from .generation import Generation, SamplingOptions, generate
from .graphs import GRAPHS, AbsorbingGraph, DenseGraph, Graph, UniformGraph, get_graph
from .likelihood import bits_per_token, elbo, perplexity
from .loading import Loaded, load
from .losses import sample_times, score_entropy_loss, weighted_score_entropy
from .model import BlockDiffusionTransformer, ModelConfig, SEDDTransformer
from .sampling import PREDICTORS, AnalyticPredictor, EulerPredictor, Predictor, SampleTrajectory, sample
from .schedules import SCHEDULES, GeometricSchedule, LogLinearSchedule, NoiseSchedule, get_schedule
from .training import TrainResult, train
from .types import ScoreFn
from .version import __version__

__all__ = [
    "Generation",
    "SamplingOptions",
    "generate",
    "InputError",
    "ScorediffError",
    "GRAPHS",
    "PREDICTORS",
    "SCHEDULES",
    "AbsorbingGraph",
    "AnalyticPredictor",
    "BlockDiffusionTransformer",
    "DenseGraph",
    "EulerPredictor",
    "ExactScore",
    "GeometricSchedule",
    "Graph",
    "Loaded",
    "LogLinearSchedule",
    "ModelConfig",
    "NoiseSchedule",
    "Predictor",
    "RunConfig",
    "SEDDTransformer",
    "SampleTrajectory",
    "ScoreFn",
    "TrainResult",
    "UniformGraph",
    "__version__",
    "bits_per_token",
    "elbo",
    "get_graph",
    "get_schedule",
    "load",
    "load_config",
    "perplexity",
    "sample",
    "sample_times",
    "score_entropy_loss",
    "train",
    "weighted_score_entropy",
]
