"""Validation bound on held-out windows and sample previews, used during and after training."""

from __future__ import annotations

import json
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


def evaluate_during_training(model, ema, graph, schedule, tokenizer, val_windows, config, step, info, device, logger):
    """Validation bound and sample previews with the EMA weights swapped in; returns (bits/token, samples)."""
    tc = config.train
    ema.swap(model)
    model.eval()
    try:
        result = validation_bound(
            model, graph, schedule, val_windows.spread_windows(tc.eval_windows), tc.eval_num_t, tc.seed, info, device
        )
        samples = []
        if info.is_main and tc.preview_samples > 0:
            samples = preview(
                model,
                graph,
                schedule,
                tokenizer,
                tc.preview_samples,
                config.model.seq_len,
                min(config.sampling.steps, 128),
                tc.seed + step,
                device,
            )
    finally:
        model.train()
        ema.swap(model)
    logger.log({"step": step, **result, "samples": samples})
    logger.print(f"step {step}: validation bound {result['val_bits_per_token']:.3f} bits/token (EMA weights)")
    for text in samples:
        logger.print("  sample: " + json.dumps(text[:200]))
    return result["val_bits_per_token"], samples
