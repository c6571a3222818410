"""One optimizer step: the state it changes and the function that takes it (also what the benchmarks time)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch._dynamo.exc import BackendCompilerFailed

from ..config import RunConfig
from ..data.dna import random_reverse_complement
from ..devices import bf16_autocast, fast_bf16, keep_freed_memory
from ..errors import ScorediffError
from ..objectives import Objective
from .adapt import anneal_attention
from .distributed import DistInfo
from .ema import EMA
from .fsdp import checkpoint_blocks, is_sharded, local, shard, whole
from .optim import lr_at, make_optimizer, step_seed


@dataclass
class TrainState:
    """Everything a training step reads and changes.

    Attributes:
        config: the resolved run configuration.
        objective: what is optimised (diffusion or autoregressive).
        model: the bare network: its weights are what checkpoints and the EMA hold.
        network: what runs the forward pass: ``model``, compiled and/or wrapped in DDP (under FSDP the
            model itself is sharded in place).
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


def new_state(
    config: RunConfig, objective: Objective, model: nn.Module, device: torch.device, info: DistInfo, shard_now=True
):
    """A ``TrainState`` at step 0 for ``model`` (already built and seeded), on ``device``.

    Args:
        shard_now: under FSDP, shard the network here (False: a LoRA run's, sharded once its adapters are in, by
            the ``new_state`` that ``lora.attach`` makes; ``fully_shard`` takes a network once).
    """
    if device.type == "cpu":
        keep_freed_memory()
    model.to(device)
    if config.train.activation_checkpointing:
        checkpoint_blocks(model)
    if is_sharded(config) and shard_now:  # before the EMA and the optimizer: they hold the sharded parameters
        shard(model, bf16=config.train.bf16 and fast_bf16(device))
    ema = EMA(model, config.train.ema)
    optimizer = make_optimizer(model, config.optim)
    network = torch.compile(model) if config.train.compile else model
    if info.enabled and not is_sharded(config):
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


def draw_batch(state: TrainState, windows, device: torch.device) -> dict[str, Tensor]:
    """This process's rows of the global batch of the current step, with the objective's noise, on ``device``.

    The batch is a function of ``(train.seed, step)``, the same on every rank, and dropout is seeded per
    (step, rank), so a resumed run draws what an uninterrupted one would. So the position in the data is the step,
    which the checkpoint holds: nothing else to save, and it does not depend on the world size or on
    ``train.grad_accum`` (rank r takes rows ``[r B / W, (r + 1) B / W)``, split into micro-batches in order).
    Windows are drawn with replacement at uniform offsets of the memory-mapped split: every rank reads the B
    windows of the step (the noise is drawn for all of them, so that W ranks equal one), never the whole split.
    """
    tc, info = state.config.train, state.info
    generator = torch.Generator().manual_seed(step_seed(tc.seed, state.step, 0))
    examples = windows.random_examples(tc.batch_size, generator)  # the global batch, the same on every rank
    x_0 = examples["x_0"]
    if state.config.data.reverse_complement:
        x_0 = random_reverse_complement(x_0, generator)
    fields = {"given": examples["given"]} if "given" in examples else {}
    if state.config.model.num_labels:
        fields["label"] = examples["label"]
    batch = state.objective.draw(x_0, generator, **fields)
    local = tc.batch_size // info.world_size
    rows = slice(info.rank * local, (info.rank + 1) * local)
    torch.manual_seed(step_seed(tc.seed, state.step, 1 + info.rank))  # dropout
    return {name: value[rows].to(device) for name, value in batch.items()}


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
    anneal_attention(state.model, state.step, config.train.attention_anneal_steps, seq_len)
    loss_sum = torch.zeros((), device=batch["x_0"].device)
    for micro in range(accum):
        part = {name: value[micro * micro_batch : (micro + 1) * micro_batch] for name, value in batch.items()}
        with _synchronising(state, micro == accum - 1), state.autocast:
            loss = state.objective.loss(network, part).sum() / (local_batch * seq_len)
        loss.backward()
        loss_sum += loss.detach()
    clip = config.optim.grad_clip if config.optim.grad_clip > 0 else float("inf")
    # of sharded gradients, a sharded norm whose square is summed over the processes: the whole gradient's norm
    grad_norm = whole(torch.nn.utils.clip_grad_norm_(state.model.parameters(), clip))
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


def _synchronising(state: TrainState, sync: bool):
    """Gradients are reduced between processes after a micro-batch's backward only when ``sync`` (the last one):
    DDP's ``no_sync`` context, FSDP's flag."""
    if is_sharded(state.config):
        state.model.set_requires_gradient_sync(sync)
        return contextlib.nullcontext()
    return contextlib.nullcontext() if sync or not state.info.enabled else state.network.no_sync()


COMPILER_FAILURES = (BackendCompilerFailed,)
"""What makes a compiled run fall back to eager: the compiler backend could not build the traced graph. Inductor
raises its ``InductorError`` (a subclass) for a missing or broken C++ compiler (``InvalidCxxCompiler``,
``CppCompileError``) and a missing Triton. Errors in the model itself (shapes, dtypes, ``Unsupported`` tracing) are
raised by Dynamo before any backend runs, as other types, and propagate."""


def step_or_fall_back(state: TrainState, step: Callable[[], StepOutput], warn: Callable[[str], None]) -> StepOutput:
    """Take ``step``; if torch.compile's backend fails to build the model, run it eagerly from then on, say so
    through ``warn`` (one line) and take the step again.

    torch.compile is lazy, so the failure comes at the first compiled call, inside a step: before the optimizer,
    the EMA or the step count changed. The step is retried from its own batch and seeds (``step`` draws them), so
    the run is the one an eager run would have been. Once eager, a compile failure is not expected and propagates.
    """
    try:
        return step()
    except COMPILER_FAILURES as error:
        if not run_eagerly(state):
            raise
        reason = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        warn(f"warning: torch.compile could not build the model ({reason[:200]}); training without it")
        return step()


def run_eagerly(state: TrainState) -> bool:
    """Make ``state.network`` run the bare model (inside DDP, whose reducer holds the same parameters); returns
    whether it was compiled before. Gradients of the failed attempt are dropped."""
    from torch.nn.parallel import DistributedDataParallel

    ddp = isinstance(state.network, DistributedDataParallel)
    if (state.network.module if ddp else state.network) is state.model:
        return False
    if ddp:
        state.network.module = state.model
    else:
        state.network = state.model
    state.optimizer.zero_grad(set_to_none=True)
    return True


def all_finite(state: TrainState) -> bool:
    """Whether the weights and their moving average hold only finite numbers (what may be saved); sharded, this
    process's shards."""
    tensors = [p.detach() for p in state.model.parameters()] + list(state.ema.shadow.values())
    return all(bool(torch.isfinite(local(t)).all()) for t in tensors)


def release_network(state: TrainState | None) -> None:
    """Free the DDP wrapper while the process group is still registered (call it before ``distributed.teardown``).
    Freed after, its reducer would drop the group's last reference holding the GIL, and the group's destructor waits
    for a gloo worker thread that may need the GIL to free a finished collective's tensors: a deadlock seen once at
    exit (rank 1 of a 2-process run, in ``~ProcessGroupGloo`` joining its threads). The group's own binding releases
    the GIL when it dies."""
    if state is None or state.network is state.model:
        return
    state.network = state.model
    gc.collect()  # a module's hooks can hold it in a reference cycle: collect it now, not at some later step
