"""A launch plan: what a run needs per GPU and how long it takes, from its network built on the meta device.

Memory per GPU, in bytes, under DDP (every rank holds everything) and FSDP2 (``fully_shard`` per block and at the
root: each parameter, its gradient, its AdamW moments and its EMA copy split along dim 0 over the N ranks, padded
to ``ceil(rows / N)`` rows each). What this trainer keeps (``training.step.new_state``):

- weights: float32 parameters. Under bf16 they are the master weights; bf16 is compute only (autocast).
- gradients: float32, one per trainable parameter.
- optimizer: AdamW's two float32 moments per trainable parameter and a float32 step count per tensor (each rank
  keeps its own counts; they are not sharded).
- EMA: a float32 copy of every parameter. The trainer keeps it whatever ``train.ema`` (at 0 it equals the weights).
- buffers: the rotary tables, (seq_len, K) float32 twice, on every rank.
- compute copies: under DDP with bf16, autocast's bf16 copy of every linear map's weight and bias, kept for the
  backward pass; under FSDP the gathered compute-dtype parameters of the root and of two blocks (the one running
  and the one prefetched) and one block's float32 gradients before their reduce-scatter.
- DDP buckets: with more than one rank, DDP's reducer holds a flat copy of the gradients
  (``gradient_as_bucket_view=False``, its default and this trainer's).
- activations: ``training.activations`` at the micro-batch ``batch_size / (gpus x grad_accum)``, with and without
  activation checkpointing per block.

The FSDP figures are this formula for ``train.parallel=fsdp`` (``training.fsdp``), not a measurement of an FSDP run's
allocations (``benchmarks/gpu_check.py`` measures a DDP step's peak on a GPU against the DDP column).

Time to the token budget ``max_steps x batch_size x seq_len``: ``tokens x FLOPs per token / (gpus x peak x MFU)``,
with ``model.flops.training_flops_per_token`` and the GPU's dense bf16 peak (``training.gpus``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..config import RunConfig
from ..model.flops import training_flops_per_token
from .activations import FLOAT32, ActivationBytes, NetworkShape, activation_bytes
from .gpus import GPU

BF16 = 2
ADAM_MOMENTS = 2


@dataclass(frozen=True)
class StateBytes:
    """Bytes of the training state on one GPU (module docstring)."""

    weights: int
    gradients: int
    optimizer: int
    ema: int
    buffers: int
    compute_copies: int
    ddp_buckets: int

    @property
    def total(self) -> int:
        return sum(asdict(self).values())


def _shard_elements(parameter: torch.Tensor, ranks: int) -> int:
    """Elements of ``fully_shard``'s shard of ``parameter`` on one rank: dim 0 split in ``ceil(rows / ranks)``."""
    if parameter.dim() == 0:
        return 1
    rows = math.ceil(parameter.shape[0] / ranks)
    return rows * parameter[0].numel()


def _linear_parameters(model: nn.Module) -> int:
    """Elements that go through a matrix product: every ``nn.Linear``'s weight and bias, and a tied output map."""
    count = sum(p.numel() for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters())
    tied = getattr(model.config, "tie_embeddings", False)
    return count + (model.config.vocab_size * model.config.hidden_size if tied else 0)


def state_bytes(model: nn.Module, ranks: int, fsdp: bool, compute_bytes: int) -> StateBytes:
    """The training state of ``model`` (any device, meta included) on one of ``ranks`` GPUs."""
    parameters = list(model.parameters())
    trainable = [p for p in parameters if p.requires_grad]
    elements = (lambda p: _shard_elements(p, ranks)) if fsdp else (lambda p: p.numel())  # held on one rank
    weights = FLOAT32 * sum(elements(p) for p in parameters)
    gradients = FLOAT32 * sum(elements(p) for p in trainable)
    optimizer = FLOAT32 * (ADAM_MOMENTS * sum(elements(p) for p in trainable) + len(trainable))
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    if fsdp:
        blocks = [sum(p.numel() for p in block.parameters()) for block in model.blocks]
        root = sum(p.numel() for p in parameters) - sum(blocks)
        copies = compute_bytes * (root + 2 * max(blocks)) + FLOAT32 * max(blocks)
    else:
        copies = compute_bytes * _linear_parameters(model) if compute_bytes != FLOAT32 else 0
    buckets = gradients if ranks > 1 and not fsdp else 0
    return StateBytes(weights, gradients, optimizer, weights, buffers, copies, buckets)


@dataclass(frozen=True)
class Layout:
    """One parallel layout's memory per GPU."""

    state: StateBytes
    activations: int
    activations_checkpointed: int

    @property
    def total(self) -> int:
        return self.state.total + self.activations

    @property
    def total_checkpointed(self) -> int:
        return self.state.total + self.activations_checkpointed


@dataclass(frozen=True)
class Plan:
    """What ``scorediff plan`` reports."""

    parameters: int
    trainable_parameters: int
    flops_per_token: int
    micro_batch: int
    seq_len: int
    compute_dtype: str
    ddp: Layout
    fsdp: Layout
    gpus: int
    gpu: GPU
    mfu: float
    tokens: int
    seconds: float

    def to_dict(self) -> dict:
        """The plan as JSON-ready values (bytes, seconds), with each layout's totals."""
        out = asdict(self)
        for name in ("ddp", "fsdp"):
            layout = getattr(self, name)
            out[name]["state"]["total"] = layout.state.total
            out[name].update(total=layout.total, total_checkpointed=layout.total_checkpointed)
        out["fsdp"]["note"] = "formula for train.parallel=fsdp: FSDP2 shards by N; not measured"
        return out


def make_plan(model: nn.Module, config: RunConfig, gpus: int, gpu: GPU, mfu: float) -> Plan:
    """The plan of ``config`` on ``gpus`` x ``gpu`` for ``model``, its network (built on the meta device).

    ``config.train.batch_size`` must divide by ``gpus x grad_accum`` (``setup.check_batch``)."""
    tc = config.train
    micro = tc.batch_size // (gpus * tc.grad_accum)
    compute = BF16 if tc.bf16 else FLOAT32
    activations: ActivationBytes = activation_bytes(NetworkShape.of(model), micro, compute)
    layouts = {
        name: Layout(state_bytes(model, gpus, fsdp, compute), activations.total, activations.checkpointed)
        for name, fsdp in (("ddp", False), ("fsdp", True))
    }
    flops = training_flops_per_token(model)
    tokens = tc.max_steps * tc.batch_size * config.model.seq_len
    seconds = tokens * flops / (gpus * gpu.bf16_tflops * 1e12 * mfu)
    parameters = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    dtype = "bfloat16" if tc.bf16 else "float32"
    return Plan(parameters, trainable, flops, micro, config.model.seq_len, dtype, layouts["ddp"], layouts["fsdp"],
                gpus, gpu, mfu, tokens, seconds)  # fmt: skip
