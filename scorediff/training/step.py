"""One optimizer step: the state it changes and the function that takes it (also what the benchmarks time)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..config import RunConfig
from ..devices import bf16_autocast, keep_freed_memory
from ..errors import ScorediffError
from ..objectives import Objective
from .distributed import DistInfo
from .ema import EMA
from .optim import lr_at, make_optimizer


@dataclass
class TrainState:
    """Everything a training step reads and changes.

    Attributes:
        config: the resolved run configuration.
        objective: what is optimised (diffusion or autoregressive).
        model: the bare network: its weights are what checkpoints and the EMA hold.
        network: what runs the forward pass: ``model``, compiled and/or wrapped in DDP.
        optimizer: AdamW over ``model``'s parameters.
        ema: the moving average of the weights.
        info: this process's rank and the world size.
        autocast: bf16 autocast where the hardware does bf16 natively, else a no-op context.
        step: optimizer steps taken.
        tokens_seen: training tokens over all processes.
    """

    config: RunConfig
    objective: Objective
    model: nn.Module
    network: nn.Module
    optimizer: torch.optim.Optimizer
    ema: EMA
    info: DistInfo
    autocast: Any
    step: int = 0
    tokens_seen: int = 0


def new_state(config: RunConfig, objective: Objective, model: nn.Module, device: torch.device, info: DistInfo):
    """A ``TrainState`` at step 0 for ``model`` (already built and seeded), on ``device``."""
    if device.type == "cpu":
        keep_freed_memory()
    model.to(device)
    ema = EMA(model, config.train.ema)
    optimizer = make_optimizer(model, config.optim)
    network = torch.compile(model) if config.train.compile else model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        network = DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)
    autocast = bf16_autocast(device, config.train.bf16)
    return TrainState(config, objective, model, network, optimizer, ema, info, autocast)


class TrainingDiverged(ScorediffError):
    """The loss, the gradients or the weights stopped being finite; the message names the step."""


@dataclass
class StepOutput:
    """What one optimizer step reports."""

    loss: Tensor
    """This process's mean training loss, nats per token, a 0-dim float tensor (not yet averaged over ranks)."""
    grad_norm: Tensor
    """Global gradient norm before clipping."""
    skipped: bool = False
    """The loss or the gradient was not finite: the weights, the optimizer and the EMA were left as they were."""


def train_step(state: TrainState, batch: dict[str, Tensor]) -> StepOutput:
    """Take one optimizer step on this process's rows of the batch (every tensor's first dimension).

    The batch is split into ``train.grad_accum`` micro-batches whose gradients are summed, synchronised
    between processes once; the loss is the objective's nats per sequence over the batch's tokens.
    """
    config, network = state.config, state.network
    local_batch, seq_len = batch["x_0"].shape
    accum = config.train.grad_accum
    micro_batch = local_batch // accum
    for group in state.optimizer.param_groups:
        group["lr"] = lr_at(state.step, config)
    loss_sum = torch.zeros((), device=batch["x_0"].device)
    for micro in range(accum):
        part = {name: value[micro * micro_batch : (micro + 1) * micro_batch] for name, value in batch.items()}
        sync = micro == accum - 1 or not state.info.enabled
        with contextlib.nullcontext() if sync else network.no_sync(), state.autocast:
            loss = state.objective.loss(network, part).sum() / (local_batch * seq_len)
        loss.backward()
        loss_sum += loss.detach()
    clip = config.optim.grad_clip if config.optim.grad_clip > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(state.model.parameters(), clip)
    # the gradient is synchronised, so every process takes the same decision
    skipped = not bool(torch.isfinite(grad_norm) & torch.isfinite(loss_sum))
    if not skipped:
        state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    if not skipped:
        state.ema.update(state.model, state.step)
    state.step += 1
    state.tokens_seen += config.train.batch_size * seq_len
    return StepOutput(loss_sum, grad_norm, skipped)


def all_finite(state: TrainState) -> bool:
    """Whether the weights and their moving average hold only finite numbers (what may be saved)."""
    tensors = [p.detach() for p in state.model.parameters()] + list(state.ema.shadow.values())
    return all(bool(torch.isfinite(t).all()) for t in tensors)
