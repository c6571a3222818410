"""One GPU, under 8 minutes: does this machine run scorediff as it should, and how fast.

Checks, in order, each in its own time limit, an error recorded as its one-line string (the rest go on):
``environment`` (CUDA, bf16, device name and capability, torch and CUDA versions), ``sdpa_flash`` (the flash kernel
alone on the ``small`` preset's attention shapes), ``compile`` (``torch.compile`` of the network: compile time,
training-step speedup over eager), ``throughput`` (training tokens/s and model-FLOPs utilisation against the GPU's
published dense bf16 peak, ``training.gpus``), ``memory`` (a training step's peak against ``scorediff plan``'s
prediction for the same configuration), ``process_group`` (a one-GPU NCCL group through ``env://``, an all_reduce),
``fsdp`` (the trainer's FSDP2 sharding and step in that group) and ``sampling`` (tokens/s of the cached diffusion
sampler and of ``small-ar`` with its KV cache, batch 1 and larger). ``gpu_device.py`` and ``gpu_probes.py`` beside
this file hold the checks.

Prints one JSON line per check as it ends and writes ``DIR/gpu_check.json`` and ``DIR/gpu_check.png``. Without a
CUDA GPU it exits 2; ``--cpu-smoke`` runs the same path on the CPU at micro sizes (``compile`` skipped, the process
group on gloo), so that a test can.

    python benchmarks/gpu_check.py --out DIR
    python benchmarks/gpu_check.py --out DIR --quick
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import gpu_device as device_checks
import gpu_probes as probes
import torch

CHECKS = (
    ("environment", device_checks.environment, 30, False),
    ("sdpa_flash", device_checks.sdpa_flash, 60, False),
    ("compile", probes.compile_speedup, 200, True),
    ("throughput", probes.throughput, 60, False),
    ("memory", probes.memory, 60, False),
    ("process_group", device_checks.process_group, 30, False),
    ("fsdp", probes.fsdp_one_gpu, 60, False),
    ("sampling", probes.sampling, 120, False),
)
"""(name, check, time limit in seconds, CUDA only). In --cpu-smoke ``sdpa_flash`` tries the CPU's flash kernel and
``process_group`` and ``fsdp`` run on gloo."""
TOTAL_SECONDS = 450
"""The whole run's limit: a check gets at most what is left of it (the 8 minutes less start-up and the plot)."""


class CheckTimeout(Exception):
    """A check ran past its limit."""


def _alarm(signum, frame):
    raise CheckTimeout("ran past its time limit")


def run_check(name: str, check, ctx: probes.Context, limit: float) -> dict:
    """``check(ctx)`` within ``limit`` seconds (SIGALRM: a CUDA call in progress ends first); its result or error."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    start = time.perf_counter()
    try:
        found = {"status": "ok", **check(ctx)}
    except Exception as error:  # noqa: BLE001 - any failure is the finding; the other checks go on
        first_line = (str(error).strip().splitlines() or [""])[0]
        found = {"status": "error", "error": f"{type(error).__name__}: {first_line}"}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    found.update(seconds=time.perf_counter() - start, limit_seconds=limit)
    return found


def run(args: argparse.Namespace) -> dict:
    device = torch.device("cpu" if args.cpu_smoke else "cuda")
    gpu = None if args.cpu_smoke else device_checks.gpu_key(torch.cuda.get_device_name(device))
    size = "cpu-smoke" if args.cpu_smoke else "quick" if args.quick else "full"
    ctx = probes.Context(device, probes.SIZES[size], gpu)
    deadline = time.perf_counter() + TOTAL_SECONDS
    for name, check, limit, cuda_only in CHECKS:
        left = deadline - time.perf_counter()
        if cuda_only and args.cpu_smoke:
            ctx.results[name] = {"status": "skipped", "reason": "CUDA only (--cpu-smoke)"}
        elif left < 5:
            ctx.results[name] = {"status": "skipped", "reason": f"the run's {TOTAL_SECONDS} s were spent"}
        else:
            ctx.results[name] = run_check(name, check, ctx, min(limit, left))
        print(json.dumps({"check": name, **ctx.results[name]}), flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    _leave_group()
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "sizes": size,
            "command": " ".join(sys.argv), "checks": ctx.results}  # fmt: skip


def _leave_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def plot(result: dict, path: Path) -> None:
    """Training tokens/s (MFU on the bars), sampling tokens/s, and memory measured against planned."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    checks = result["checks"]
    figure, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    variants = checks["throughput"].get("variants", {})
    bars(axes[0], {k: v["tokens_per_second"] for k, v in variants.items()}, "training tokens/s",
         {k: f"MFU {v['mfu']:.0%}" for k, v in variants.items() if v["mfu"] is not None})  # fmt: skip
    rates = {k: v["tokens_per_second"] for k, v in checks["sampling"].items() if isinstance(v, dict) and "nfe" in v}
    bars(axes[1], rates, "sampling tokens/s", {})
    memory = checks["memory"]
    if "measured_bytes" in memory:
        gib = {"measured": memory["measured_bytes"] / 2**30, "planned": memory["planned_bytes"] / 2**30}
        bars(axes[2], gib, "GiB, one training step", {"measured": f"{memory['measured_over_planned']:.2f}x planned"})
    device = checks["environment"].get("device_name", "CPU (--cpu-smoke)")
    statuses = ", ".join(f"{name} {check['status']}" for name, check in checks.items())
    figure.suptitle(f"benchmarks/gpu_check.py on {device}, {result['date']} ({result['sizes']} sizes)\n{statuses}",
                    fontsize=9)  # fmt: skip
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def bars(axis, values: dict[str, float], label: str, notes: dict[str, str]) -> None:
    names = list(values)
    axis.barh(range(len(names)), list(values.values()), color="tab:blue")
    for i, name in enumerate(names):
        shown = f"{values[name]:,.0f}" if values[name] >= 100 else f"{values[name]:.3g}"
        axis.text(values[name], i, f" {shown} {notes.get(name, '')}", va="center", fontsize=8)
    axis.set_yticks(range(len(names)), names, fontsize=8)
    axis.invert_yaxis()
    axis.set(xlabel=label, xlim=(0, 1.6 * max(values.values(), default=1)))


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and gpu_check.png")
    parser.add_argument("--quick", action="store_true", help="shorter sequences, fewer steps and samples")
    parser.add_argument("--cpu-smoke", action="store_true", help="the same code on the CPU at micro sizes")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if not args.cpu_smoke and not torch.cuda.is_available():
        print("gpu_check: needs a CUDA GPU; found none (--cpu-smoke runs the code on the CPU)", file=sys.stderr)
        return 2
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
    try:
        plot(result, args.out / "gpu_check.png")
    except ImportError as error:  # matplotlib is the plots' extra; the JSON is what counts
        print(f"gpu_check: no plot ({error})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
