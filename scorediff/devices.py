"""Which device ``auto`` means; what the hardware does fast: native bf16 matrix products, on GPUs and on recent
CPUs; and a CPU allocator setting that keeps training steps from paying for fresh memory every time."""

from __future__ import annotations

import ctypes
import os

import torch

from .errors import InputError


def resolve_device(name: str) -> str:
    """The device ``auto`` stands for, ``cuda`` when a GPU is available and ``cpu`` otherwise; any other name is
    returned as it came, for the caller to check. Every command and the trainer resolve ``auto`` here, so it means
    the same everywhere."""
    if name != "auto":
        return name
    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_device(name: str | torch.device | None, what: str = "device") -> torch.device:
    """The ``torch.device`` ``name`` stands for (``auto`` resolved, None the CPU), refusing a name torch does not
    know, a device type other than cpu or cuda, and a GPU this machine does not have, with an ``InputError``
    whose message names the argument as ``what``."""
    if isinstance(name, torch.device):
        device = name
    else:
        try:
            device = torch.device(resolve_device("cpu" if name is None else str(name)))
        except (RuntimeError, ValueError):
            raise InputError(f"{what} must be auto, cpu, cuda or cuda:N; got {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"{what} must be auto, cpu, cuda or cuda:N; got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"{what} {name}: CUDA is not available on this machine; use cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(f"{what} {name}: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matrix products natively: a CUDA GPU with bf16, or a CPU with AVX512-BF16
    or AMX instructions (elsewhere bf16 is emulated and slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        native = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in native)
    return False


def bf16_autocast(device: torch.device, enabled: bool):
    """bf16 autocast on ``device`` when ``enabled`` and the hardware does bf16 natively; otherwise a no-op."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled and fast_bf16(device))


# glibc's mallopt parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> bool:
    """Let glibc's allocator keep freed blocks for reuse instead of handing them back to the system.

    A CPU training step allocates and frees activations of megabytes each; by default glibc maps the large
    ones afresh and trims the heap after frees, so every step pays page faults and the kernel's zeroing of
    the same memory again (a fifth of a ``tiny`` step on 2 cores). Blocks below 32 MiB now come from the heap,
    which is never trimmed, so the process keeps its peak memory. ``SCOREDIFF_KEEP_FREED_MEMORY=0`` in the
    environment leaves glibc's defaults. Returns whether it applied (glibc only)."""
    if os.environ.get("SCOREDIFF_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 (musl and macOS have no such symbol: leave them as they are)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
