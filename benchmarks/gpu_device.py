"""The checks of ``benchmarks/gpu_check.py`` of the device and torch alone: CUDA and bf16, the flash attention
kernel, a one-process group; and the name of the device in ``training.gpus``."""

from __future__ import annotations

import os
import socket
import time
import warnings

import torch
from gpu_probes import Context, run_config, sync

GPU_NAMES = (
    (("h100", "pcie"), "h100-pcie"), (("h100", "nvl"), None), (("h100",), "h100"), (("h200", "nvl"), "h200-nvl"),
    (("h200",), "h200"), (("a100", "40gb"), "a100-40gb"), (("a100",), "a100"), (("l40s",), "l40s"), (("l4",), "l4"),
    (("a10",), "a10"), (("b200",), "b200"), (("mi300x",), "mi300x"),
)  # fmt: skip
"""Words of ``torch.cuda.get_device_name`` -> the ``training.gpus`` entry; the first rule whose words all appear
wins. An H100 NVL is none of the table's cards (its peak is left unknown rather than guessed)."""


def gpu_key(name: str) -> str | None:
    """The ``training.gpus`` entry of a device name (``NVIDIA H100 80GB HBM3`` -> ``h100``), None if unknown."""
    words = set(name.lower().replace("-", " ").split())
    return next((key for needed, key in GPU_NAMES if words.issuperset(needed)), None)


def environment(ctx: Context) -> dict:
    """CUDA and bf16: the device, its capability, torch's and CUDA's versions."""
    found = {"torch": torch.__version__, "cuda_version": torch.version.cuda, "cuda": torch.cuda.is_available()}
    if ctx.device.type == "cuda":
        capability = torch.cuda.get_device_capability(ctx.device)
        found.update(device_name=torch.cuda.get_device_name(ctx.device), capability=f"{capability[0]}.{capability[1]}")
        found.update(bf16=torch.cuda.is_bf16_supported(), gpu_table_entry=ctx.gpu)
        x = torch.ones(64, 64, device=ctx.device, dtype=torch.bfloat16)
        found["bf16_matmul_ok"] = bool(((x @ x) == 64).all())
    return found


def sdpa_flash(ctx: Context) -> dict:
    """The flash kernel alone (``sdpa_kernel(FLASH_ATTENTION)``) on the model's attention shapes, bf16, forward and
    backward: bidirectional (diffusion) and causal (AR), with the preset's dropout. Why not, where it does not run."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = run_config(ctx).model
    shape = (ctx.sizes.micro_batch, model.n_heads, model.seq_len, model.hidden_size // model.n_heads)
    found = {"shape_bhlk": list(shape), "dtype": "bfloat16", "dropout": model.dropout}
    for name, causal in (("bidirectional", False), ("causal", True)):
        q, k, v = (torch.randn(shape, device=ctx.device, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        with warnings.catch_warnings(record=True) as caught, sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            warnings.simplefilter("always")
            try:
                out = torch.nn.functional.scaled_dot_product_attention(
                    q, k, v, dropout_p=model.dropout, is_causal=causal
                )
                out.float().sum().backward()
                sync(ctx)
                found[name] = {"runs": True}
            except RuntimeError as error:
                why = [str(w.message).splitlines()[0] for w in caught]
                found[name] = {"runs": False, "error": str(error).splitlines()[0], "why": why}
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_group(ctx: Context) -> dict:
    """A one-process group (``env://``, world size 1: NCCL on a GPU, gloo in ``--cpu-smoke``) and an all_reduce;
    the group stays up for the FSDP check."""
    import torch.distributed as dist

    backend = "nccl" if ctx.device.type == "cuda" else "gloo"
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), RANK="0", WORLD_SIZE="1")
    start = time.perf_counter()
    dist.init_process_group(backend, init_method="env://", rank=0, world_size=1)
    values = torch.arange(4.0, device=ctx.device)
    dist.all_reduce(values)
    sync(ctx)
    return {
        "backend": backend,
        "seconds": time.perf_counter() - start,
        "all_reduce_ok": values.tolist() == [0, 1, 2, 3],
    }
