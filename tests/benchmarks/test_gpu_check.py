"""``benchmarks/gpu_check.py`` without a GPU: ``--cpu-smoke`` runs every check's code at micro sizes in a few
seconds; the JSON holds every check, and each figure it derives (tokens/s, the memory ratio, the FSDP gap) is the
one computed from the numbers beside it. The planned bytes are recomputed here from ``training.plan``."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import gpu_check  # noqa: E402
import gpu_device  # noqa: E402
import gpu_probes  # noqa: E402

from scorediff.commands.plan_cmd import meta_network  # noqa: E402
from scorediff.model.flops import training_flops_per_token  # noqa: E402
from scorediff.training.gpus import GPUS  # noqa: E402
from scorediff.training.plan import make_plan  # noqa: E402


def run_script(*argv: str, out: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(BENCHMARKS / "gpu_check.py"), "--out", str(out), *argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu_check")
    done = run_script("--cpu-smoke", out=out)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["check"] for line in lines] == [name for name, *_ in gpu_check.CHECKS]
    assert (out / "gpu_check.png").stat().st_size > 10_000
    return json.loads((out / "gpu_check.json").read_text())


def test_every_check_ran_or_says_why_not(smoke):
    statuses = {name: check["status"] for name, check in smoke["checks"].items()}
    assert statuses == {name: "skipped" if name == "compile" else "ok" for name, *_ in gpu_check.CHECKS}
    assert smoke["checks"]["compile"]["reason"] == "CUDA only (--cpu-smoke)"
    assert smoke["sizes"] == "cpu-smoke" and smoke["checks"]["environment"]["cuda"] is False
    assert smoke["checks"]["sdpa_flash"]["shape_bhlk"] == [2, 4, 32, 8]


def test_memory_is_compared_with_the_plan_of_the_same_config(smoke):
    memory = smoke["checks"]["memory"]
    ctx = gpu_probes.Context(torch.device("cpu"), gpu_probes.SIZES["cpu-smoke"], None)
    config = gpu_probes.run_config(ctx, bf16=False)
    plan = make_plan(meta_network(config, ctx.sizes.vocab), config, 1, GPUS["h100"], 0.4)
    assert memory["planned_bytes"] == plan.ddp.total
    assert memory["planned_state_bytes"] + memory["planned_activation_bytes"] == plan.ddp.total
    assert memory["measured_over_planned"] == memory["measured_bytes"] / memory["planned_bytes"]
    # counted tensor by tensor on the CPU, the plan's own quantities: state exact, activations within 1% below
    assert 1.0 <= memory["measured_over_planned"] <= 1.01


def test_throughput_and_sampling_rates_come_from_their_timings(smoke):
    throughput = smoke["checks"]["throughput"]
    ctx = gpu_probes.Context(torch.device("cpu"), gpu_probes.SIZES["cpu-smoke"], None)
    network = meta_network(gpu_probes.run_config(ctx), ctx.sizes.vocab)
    assert throughput["flops_per_token"] == training_flops_per_token(network)
    assert throughput["tokens_per_step"] == 2 * 32
    eager = throughput["variants"]["eager"]
    assert eager["tokens_per_second"] == pytest.approx(64 / eager["step_seconds"], rel=1e-12)
    assert eager["mfu"] is None and throughput["peak_bf16_flops"] is None  # no GPU, no published peak
    sampling = smoke["checks"]["sampling"]
    assert set(sampling) - {"status", "seconds", "limit_seconds"} == {
        f"{preset} batch {batch}" for preset in ("small", "small-ar") for batch in (1, 2)
    }
    for name, row in sampling.items():
        if isinstance(row, dict):
            assert name.endswith(f"batch {row['batch']}")
            assert row["tokens_per_second"] == pytest.approx(row["batch"] * row["length"] / row["seconds"], rel=1e-12)
    assert sampling["small-ar batch 2"]["nfe"] == 32  # one KV-cached call per token


def test_fsdp_on_one_process_matches_the_unsharded_step(smoke):
    fsdp, group = smoke["checks"]["fsdp"], smoke["checks"]["process_group"]
    assert group["backend"] == "gloo" and group["all_reduce_ok"] is True
    assert fsdp["sharded"] is True and len(fsdp["losses"]) == 2
    gaps = [abs(a - b) / abs(b) for a, b in zip(fsdp["losses"], fsdp["unsharded_losses"], strict=True)]
    assert fsdp["max_relative_gap"] == max(gaps) < 1e-5
    held = fsdp["local_state_bytes"]  # one process holds every shard: a float32 gradient and 2 AdamW moments each
    assert held["gradients"] == held["parameters"] > 0 and held["optimizer"] >= 2 * held["parameters"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_exits_2_in_one_line(tmp_path):
    done = run_script(out=tmp_path / "out")
    assert done.returncode == 2 and not (tmp_path / "out").exists()
    assert done.stderr.strip().splitlines() == [
        "gpu_check: needs a CUDA GPU; found none (--cpu-smoke runs the code on the CPU)"
    ]


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("NVIDIA H100 80GB HBM3", "h100"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA H100 NVL", None),
        ("NVIDIA H200", "h200"),
        ("NVIDIA H200 NVL", "h200-nvl"),
        ("NVIDIA A100-SXM4-80GB", "a100"),
        ("NVIDIA A100-PCIE-40GB", "a100-40gb"),
        ("NVIDIA L40S", "l40s"),
        ("NVIDIA L4", "l4"),
        ("NVIDIA A10", "a10"),
        ("NVIDIA B200", "b200"),
        ("AMD Instinct MI300X", "mi300x"),
        ("NVIDIA GeForce RTX 4090", None),
    ],
)
def test_device_names_map_to_the_peak_table(name, key):
    assert gpu_device.gpu_key(name) == key
    assert key is None or key in GPUS


def test_a_check_past_its_limit_or_failing_is_recorded_and_the_run_goes_on():
    ctx = gpu_probes.Context(torch.device("cpu"), gpu_probes.SIZES["cpu-smoke"], None)
    start = time.perf_counter()
    late = gpu_check.run_check("late", lambda ctx: time.sleep(60) or {}, ctx, 0.3)
    assert time.perf_counter() - start < 30  # not waited out: far below the check's 60 s, with room for a busy machine
    assert late["status"] == "error" and late["error"] == "CheckTimeout: ran past its time limit"
    failed = gpu_check.run_check("bad", lambda ctx: 1 / 0, ctx, 5)
    assert failed == {"status": "error", "error": "ZeroDivisionError: division by zero",
                      "seconds": failed["seconds"], "limit_seconds": 5}  # fmt: skip
