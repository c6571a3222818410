"""torchrun / DDP plumbing: one process per device, gloo on CPU, NCCL on GPU."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..devices import resolve_device


@dataclass
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device_request: str) -> tuple[DistInfo, torch.device]:
    """Read torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE), start the process group, pick the device."""
    info = DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
    )
    use_cuda = resolve_device(device_request).startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        from ..config import ConfigError

        raise ConfigError(f"train.device={device_request} but CUDA is not available; use train.device=cpu or auto")
    index = int(device_request.split(":")[1]) if ":" in device_request else info.local_rank
    device = torch.device("cuda", index) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if info.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return info, device


def barrier(info: DistInfo) -> None:
    """Wait until every process gets here."""
    if info.enabled:
        dist.barrier()


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def any_rank(flags: list[bool], info: DistInfo, device: torch.device) -> list[bool]:
    """Each flag true on every rank when it is true on any (so all stop at the same step)."""
    if not info.enabled:
        return list(flags)
    values = torch.tensor([float(flag) for flag in flags], device=device)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return [bool(value) for value in values.tolist()]


def broadcast_object(value, info: DistInfo):
    """Rank 0's ``value`` (a small picklable object between our own processes) on every rank."""
    if not info.enabled:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
