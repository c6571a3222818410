"""What the hardware does fast: native bf16 matrix products, on GPUs and on recent CPUs."""

from __future__ import annotations

import torch


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
