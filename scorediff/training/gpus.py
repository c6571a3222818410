"""Published dense bf16 tensor-core peaks and memory of the accelerators ``scorediff plan`` knows.

Vendors quote bf16 throughput "with sparsity" (2:4 structured sparsity doubles it); training runs dense, so each
figure here is the dense one, half the sparse headline. Memory is the published capacity in GB (10^9 bytes); a
process sees somewhat less (the CUDA context, the allocator's fragments).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GPU:
    """One accelerator: its full name, dense bf16 peak (TFLOP/s) and memory (GB)."""

    name: str
    bf16_tflops: float
    memory_gb: float


GPUS: dict[str, GPU] = {
    # NVIDIA H100 Tensor Core GPU datasheet: BF16 1,979 TFLOPS (SXM) / 1,513 (PCIe) with sparsity; 80 GB
    "h100": GPU("NVIDIA H100 SXM 80GB", 989.0, 80.0),
    "h100-pcie": GPU("NVIDIA H100 PCIe 80GB", 756.0, 80.0),
    # NVIDIA H200 datasheet: BF16 1,979 (SXM) / 1,671 (NVL, PCIe) TFLOPS with sparsity; 141 GB
    "h200": GPU("NVIDIA H200 SXM 141GB", 989.0, 141.0),
    "h200-nvl": GPU("NVIDIA H200 NVL (PCIe) 141GB", 835.0, 141.0),
    # NVIDIA A100 datasheet: BF16 312 TFLOPS dense (624 sparse), the same for SXM and PCIe; 80 GB or 40 GB
    "a100": GPU("NVIDIA A100 SXM 80GB", 312.0, 80.0),
    "a100-40gb": GPU("NVIDIA A100 40GB", 312.0, 40.0),
    # NVIDIA L40S datasheet: BF16 362.05 TFLOPS dense (733 sparse); 48 GB (PCIe card)
    "l40s": GPU("NVIDIA L40S PCIe 48GB", 362.0, 48.0),
    # NVIDIA L4 datasheet: BF16 242 TFLOPS with sparsity; 24 GB (PCIe card)
    "l4": GPU("NVIDIA L4 PCIe 24GB", 121.0, 24.0),
    # NVIDIA A10 datasheet: BF16 125 TFLOPS dense (250 sparse); 24 GB (PCIe card)
    "a10": GPU("NVIDIA A10 PCIe 24GB", 125.0, 24.0),
    # NVIDIA HGX B200 datasheet: FP16/BF16 4.5 PFLOPS per GPU with sparsity; 180 GB
    "b200": GPU("NVIDIA B200 SXM 180GB", 2250.0, 180.0),
    # AMD Instinct MI300X datasheet: BF16 1,307.4 TFLOPS dense; 192 GB (OAM module)
    "mi300x": GPU("AMD Instinct MI300X 192GB", 1307.4, 192.0),
}
