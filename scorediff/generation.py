"""One way to generate from any trained model: ``generate`` takes keyword options, returns a ``Generation``.

The command line (``sample``, ``infill``, ``--prompts``, ``eval-dna``), the previews during training and the
benchmarks all call it, so an option means the same everywhere; ``sampling_options`` turns a run's ``sampling``
section into those options (one owner of the defaults). The options themselves are those of the objective's
``sample``: a diffusion model's sampler (``SAMPLERS``) or decoding order (``ORDERS``), steps, temperature,
nucleus, cache, label and guidance; an autoregressive model's temperature, nucleus and cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .config import RunConfig
from .objectives import Objective
from .sampling import SampleStats, SampleTrajectory


@dataclass
class Generation:
    """What ``generate`` returns.

    Attributes:
        tokens (Tensor): int64, shape (batch_size, length).
        stats (SampleStats): network calls, steps, seconds and tokens of the call.
        trajectory (SampleTrajectory | None): every intermediate state, when asked for (``return_trajectory``).
    """

    tokens: Tensor
    stats: SampleStats
    trajectory: SampleTrajectory | None = None


def sampling_options(config: RunConfig) -> dict:
    """The run's ``sampling`` section as options of its objective's ``sample``."""
    sampling = config.sampling
    options = {"temperature": sampling.temperature, "top_p": sampling.top_p}
    if config.objective == "autoregressive":
        return options
    options.update(steps=sampling.steps, predictor=sampling.predictor)
    if sampling.order != "random" or sampling.tokens_per_step:
        options.update(order=sampling.order, tokens_per_step=sampling.tokens_per_step or None)
    return options


def generate(
    objective: Objective,
    model: nn.Module,
    shape: tuple[int, int],
    *,
    condition: tuple[Tensor, Tensor] | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    **options,
) -> Generation:
    """Draw ``shape`` tokens from ``model`` through ``objective``; ``condition = (tokens, given)`` keeps the given
    tokens (a prompt, a prefix and suffix, any positions). ``seed`` (or a ``generator``) fixes every draw.

    Args:
        objective (Objective): how the model generates.
        model (nn.Module): its network.
        shape (tuple[int, int]): (batch_size, length); past the model's context, window by window.
        condition (tuple[Tensor, Tensor] | None): int64 and bool, shape ``shape`` each.
        seed (int | None): seeds a new generator on ``device`` (ignored when ``generator`` is given).
        generator (torch.Generator | None): the source of randomness.
        device: where to generate.
        **options (Any): the objective's sampling options (see its ``sample``).
    """
    if generator is None and seed is not None:
        generator = torch.Generator(device=device or "cpu").manual_seed(int(seed))
    out, stats = objective.sample(
        model, shape, condition=condition, generator=generator, device=device, return_stats=True, **options
    )
    if isinstance(out, SampleTrajectory):
        return Generation(out.tokens, stats, out)
    return Generation(out, stats)
