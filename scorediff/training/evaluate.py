"""Validation likelihood on held-out windows and sample previews, used during and after training."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import torch

from ..generation import generate, sampling_options
from ..objectives import Objective
from ..sampling.options import SamplingOptions
from .distributed import DistInfo, all_reduce_sum, broadcast_object
from .fsdp import is_sharded
from .sharded import averaged_copy
from .step import TrainState


@torch.no_grad()
def nats_per_window(
    objective: Objective,
    model: torch.nn.Module,
    windows: torch.Tensor,
    generator: torch.Generator,
    num_t: int,
    batch_size: int,
    device,
    labels: torch.Tensor | None = None,
    given: torch.Tensor | None = None,
) -> torch.Tensor:
    """The objective's ``nll`` of each of ``windows`` (N, L) in batches, float64 (N,) on ``device``; with ``labels``
    (N,), a class-conditional model's, each window given its label; with ``given`` (N, L) bool, the conditional
    ``nll`` of the other positions (the answers of prompted examples)."""
    nats = []
    for start in range(0, len(windows), batch_size):
        rows = slice(start, start + batch_size)
        fields = {} if labels is None else {"label": labels[rows].to(device)}
        if given is not None:
            fields["given"] = given[rows].to(device)
        nats.append(objective.nll(model, windows[rows].to(device), generator=generator, num_t=num_t, **fields))
    return torch.cat(nats) if nats else torch.zeros(0, dtype=torch.float64, device=device)


def validation_nll(
    objective: Objective,
    model: torch.nn.Module,
    windows: torch.Tensor,
    num_t: int,
    seed: int,
    info: DistInfo,
    device: torch.device,
    batch_size: int = 32,
    labels: torch.Tensor | None = None,
    given: torch.Tensor | None = None,
) -> dict[str, float]:
    """The objective's ``nll`` (a bound, or exact) over ``windows`` (N, L), split across ranks; with ``labels``
    (N,), a class-conditional model's, each window given its label; with ``given`` (N, L) bool, per token of
    the positions not given.

    Returns ``{"val_nats_per_token", "val_bits_per_token", "val_tokens"}``. A fixed seed makes evaluations
    of different checkpoints comparable.
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    mine = slice(info.rank, None, info.world_size)
    labels = None if labels is None else labels[mine]
    given = None if given is None else given[mine]
    nats = nats_per_window(objective, model, windows[mine], generator, num_t, batch_size, device, labels, given)
    scored = float(windows[mine].numel() if given is None else (~given).sum())
    totals = torch.tensor([float(nats.sum()), scored], device=device, dtype=torch.float64)
    nats, tokens = all_reduce_sum(totals, info).tolist()
    per_token = nats / max(tokens, 1)
    return {"val_nats_per_token": per_token, "val_bits_per_token": per_token / math.log(2), "val_tokens": tokens}


@torch.no_grad()
def preview(
    objective: Objective, model, tokenizer, num_samples: int, seq_len: int, options: SamplingOptions, seed: int, device,
    condition: tuple[torch.Tensor, torch.Tensor] | None = None,
):  # fmt: skip
    """A few samples, decoded: unconditional, or the answers to the first prompts of ``condition`` (tokens, given)."""
    generator = torch.Generator(device=device).manual_seed(seed)
    if condition is not None:
        condition = tuple(part[:num_samples].to(device) for part in condition)
        num_samples = len(condition[0])
    tokens = generate(
        objective, model, (num_samples, seq_len), options, condition=condition, generator=generator, device=device
    ).tokens
    return [tokenizer.decode(row.tolist()) if tokenizer is not None else str(row.tolist()) for row in tokens.cpu()]


def evaluate_during_training(state: TrainState, tokenizer, val_windows, device, logger) -> tuple[float, list[str]]:
    """Validation likelihood and sample previews with the EMA weights swapped in; returns (bits/token, samples).

    An FSDP run scores on rank 0 alone, with a whole copy of the EMA weights (``sharded.averaged_copy``): the
    samplers call the network in ways the ranks cannot keep in step (rank 0's previews, uneven splits)."""
    if is_sharded(state.config):
        model, result, samples = averaged_copy(state, device), None, []
        if model is not None:
            result, samples = _score(state, model, DistInfo(), tokenizer, val_windows, device)
        result = broadcast_object(result, state.info)
        del model  # the whole copy: freed before training goes on
    else:
        state.ema.swap(state.model)
        try:
            result, samples = _score(state, state.model, state.info, tokenizer, val_windows, device)
        finally:
            state.ema.swap(state.model)
    what = "nll" if state.objective.exact else "bound"
    logger.log({"step": state.step, **result, "samples": samples})
    logger.print(f"step {state.step}: validation {what} {result['val_bits_per_token']:.3f} bits/token (EMA weights)")
    for text in samples:
        logger.print("  sample: " + json.dumps(text[:200]))
    return result["val_bits_per_token"], samples


def _score(state: TrainState, model, info: DistInfo, tokenizer, val_windows, device) -> tuple[dict, list[str]]:
    """``validation_nll`` of ``model`` over the run's evaluation windows, split over ``info``'s ranks, and rank 0's
    previews."""
    tc = state.config.train
    model.eval()
    try:
        examples = val_windows.spread_examples(tc.eval_windows)
        labels = examples["label"] if state.config.model.num_labels else None  # scored as scorediff eval does
        result = validation_nll(
            state.objective, model, examples["x_0"], tc.eval_num_t, tc.seed, info, device,
            labels=labels, given=examples.get("given"),
        )  # fmt: skip
        samples = []
        if info.is_main and tc.preview_samples > 0:
            seq_len = state.config.model.seq_len
            options = sampling_options(state.config)
            options = replace(options, steps=min(options.steps, 128))  # a preview, not the final samples
            condition = (examples["x_0"], examples["given"]) if "given" in examples else None
            samples = preview(
                state.objective, model, tokenizer, tc.preview_samples, seq_len, options, tc.seed + state.step, device,
                condition,
            )  # fmt: skip
    finally:
        model.train()
    return result, samples
