"""FSDP2 (``train.parallel=fsdp``): the network sharded over the processes, block by block, and the helpers that
read the sharded tensors it leaves (``DTensor``: each process holds rows ``rank / N`` of every parameter, its
gradient, its AdamW moments and its moving average).

``fully_shard`` is PyTorch's own (``torch.distributed.fsdp``, public since torch 2.6); it is imported where it
is used, so that the package keeps working on an older torch for single-process and DDP runs, and ``fsdp`` is
refused there in one line (so are the sharded checkpoints such runs write: ``sharded.py``).
"""

from __future__ import annotations

import functools

import torch
import torch.utils.checkpoint  # not loaded by ``import torch`` before torch 2.3
from torch import Tensor, nn

from ..config import ConfigError, RunConfig
from .distributed import DistInfo


def is_sharded(config: RunConfig) -> bool:
    """Whether the run shards its network (``train.parallel=fsdp``)."""
    return config.train.parallel == "fsdp"


FSDP2_TORCH = "2.6"
"""The first torch whose ``torch.distributed.fsdp`` has FSDP2 (``fully_shard``, ``MixedPrecisionPolicy``)."""


def check_parallel(config: RunConfig, info: DistInfo) -> None:
    """Refuse, in one line (``ConfigError``), an FSDP run that cannot be: a torch without FSDP2 (said first: more
    processes would not help), one process."""
    if not is_sharded(config):
        return
    _fully_shard()
    if not info.enabled:
        raise ConfigError(
            "train.parallel=fsdp shards the model over processes: launch with torchrun --nproc_per_node=N (N >= 2), "
            "or use train.parallel=ddp; got 1 process"
        )


def has_fsdp2() -> bool:
    """Whether this torch has FSDP2 (torch >= ``FSDP2_TORCH``), checked by importing it rather than by version
    number, so that a nightly or a vendor's build is judged by what it holds."""
    try:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard  # noqa: F401
    except ImportError:
        return False
    return True


def _fully_shard():
    """``(fully_shard, MixedPrecisionPolicy)``, or a one-line ``ConfigError`` on a torch without them."""
    if not has_fsdp2():
        raise ConfigError(
            f"train.parallel=fsdp needs torch >= {FSDP2_TORCH} (FSDP2's fully_shard); this is torch {torch.__version__}"
        )
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    return fully_shard, MixedPrecisionPolicy


def shard(model: nn.Module, bf16: bool) -> None:
    """Shard ``model`` in place: each transformer block is one unit (gathered for its forward and backward, then
    freed), the root holds the rest (embeddings, conditioning, output layer; a tied output weight stays with its
    embedding there).

    Args:
        bf16: compute in bf16 from float32 master weights, gradients reduced in float32; else all float32.
    """
    fully_shard, Policy = _fully_shard()
    policy = Policy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else Policy()
    for block in model.blocks:
        fully_shard(block, mp_policy=policy)
    fully_shard(model, mp_policy=policy)


def checkpoint_blocks(model: nn.Module) -> None:
    """Recompute each block's activations in the backward pass (``torch.utils.checkpoint``, non-reentrant, the RNG
    state replayed so dropout draws the same masks). The blocks keep their names, so checkpoints are unchanged;
    without gradients (evaluation, sampling) a block runs as before."""
    for block in model.blocks:
        block.forward = functools.partial(_checkpointed, block.forward)


def _checkpointed(forward, *args, **kwargs):
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False, **kwargs)


def local(tensor: Tensor) -> Tensor:
    """This process's shard of a sharded tensor; any other tensor as it is."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def whole(tensor: Tensor) -> Tensor:
    """The whole of a sharded tensor (a collective: every process calls it); any other tensor as it is."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def load_whole(model: nn.Module, weights: dict[str, Tensor]) -> None:
    """Load whole weights (every process holds them) into ``model``, sharded or not."""
    if not any(hasattr(p, "to_local") for p in model.parameters()):
        model.load_state_dict(weights)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True))


def state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes this process holds of the parameters, their gradients and the optimizer's state (local shards).

    Returns:
        ``{"parameters", "gradients", "optimizer"}``: bytes, each counted once per tensor.
    """

    def size(tensors) -> int:
        return sum(local(t).numel() * local(t).element_size() for t in tensors if torch.is_tensor(t))

    params = list(model.parameters())
    moments = [value for per_param in optimizer.state.values() for value in per_param.values()]
    return {"parameters": size(params), "gradients": size(p.grad for p in params), "optimizer": size(moments)}
