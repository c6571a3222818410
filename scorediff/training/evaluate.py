"""Validation bound on held-out windows and sample previews, used during and after training."""

from __future__ import annotations

import math

import torch

from ..graphs import Graph
from ..likelihood import elbo
from ..sampling import sample
from ..schedules import NoiseSchedule
from ..types import ScoreFn
from .distributed import DistInfo, all_reduce_sum


@torch.no_grad()
def validation_bound(
    score_fn: ScoreFn,
    graph: Graph,
    schedule: NoiseSchedule,
    windows: torch.Tensor,
    num_t: int,
    seed: int,
    info: DistInfo,
    device: torch.device,
    batch_size: int = 32,
) -> dict[str, float]:
    """The likelihood bound over ``windows`` (N, L), split across ranks; nats and bits per token.

    Returns ``{"val_nats_per_token", "val_bits_per_token", "val_tokens"}``. A fixed seed makes evaluations
    of different checkpoints comparable.
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    totals = torch.zeros(2, dtype=torch.float64, device=device)  # nats, sequences
    mine = windows[info.rank :: info.world_size]
    for start in range(0, len(mine), batch_size):
        x_0 = mine[start : start + batch_size].to(device)
        nats = elbo(score_fn, graph, schedule, x_0, num_t=num_t, generator=generator)
        totals += torch.stack([nats.sum(), torch.tensor(float(len(x_0)), device=device, dtype=torch.float64)])
    nats, sequences = all_reduce_sum(totals, info).tolist()
    tokens = sequences * windows.shape[1]
    per_token = nats / max(tokens, 1)
    return {"val_nats_per_token": per_token, "val_bits_per_token": per_token / math.log(2), "val_tokens": tokens}


@torch.no_grad()
def preview(score_fn, graph, schedule, tokenizer, num_samples: int, seq_len: int, steps: int, seed: int, device):
    """A few unconditional samples, decoded."""
    generator = torch.Generator(device=device).manual_seed(seed)
    tokens = sample(score_fn, graph, schedule, (num_samples, seq_len), steps, generator=generator, device=device)
    return [tokenizer.decode(row.tolist()) if tokenizer is not None else str(row.tolist()) for row in tokens.cpu()]
