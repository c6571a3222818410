"""Training-step throughput of a preset: the library's ``train_step`` under each speed option, as model FLOP/s
against a matmul peak measured in the same run, and optionally against the original SEDD code.

Every variant runs the trainer's own step (``scorediff.training.step.train_step``: forward, loss, backward,
clip, AdamW, EMA) on the same batches, interleaved round by round so that machine noise hits them alike; the
JSON reports tokens/s per variant, each one's ratio to the first, and its model FLOP/s as a fraction of the
peak of a large matmul in the variant's precision. Model FLOPs per token are
``scorediff.model.training_flops_per_token``: the usual ``6 N + 12 n_blocks seq_len hidden_size``, with ``N``
the weights every position goes through (not the embedding, nor adaLN's, which act once per sequence), so the
fraction is comparable with published MFU numbers.

With ``--original-tree`` the original SEDD code is timed in its own process between the rounds
(``../shared/tools/sedd_official_bench.py``, at the same shape and batch) and the ratio reported.

    python benchmarks/train_step.py --preset tiny --rounds 5 --steps 10
    python benchmarks/train_step.py --variants bf16,compile+bf16 --original-tree /tmp/sedd-original \
        --original-python /tmp/sedd-venv/bin/python --json train_step.json --png train_step.png
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch
from shapes import add_shape_argument

from scorediff.config import load_config
from scorediff.data.prepare import build_tokenizer
from scorediff.devices import fast_bf16
from scorediff.model import training_flops_per_token
from scorediff.training.distributed import DistInfo
from scorediff.training.setup import build
from scorediff.training.step import train_step

TOOL = Path(__file__).resolve().parents[2] / "shared" / "tools" / "sedd_official_bench.py"


def matmul_peak(dtype: torch.dtype, device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    """The best FLOP/s of a ``size``-cubed matmul in ``dtype`` over a few tries."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    best = 0.0
    for _ in range(repeats + 1):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = max(best, 2 * size**3 / (time.perf_counter() - start))
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_state(config, tokenizer, device, *, bf16: bool, compile: bool):
    train = dataclasses.replace(config.train, bf16=bf16, compile=compile)
    return build(dataclasses.replace(config, train=train), tokenizer, device, DistInfo())


def time_steps(state, batches, device) -> float:
    _sync(device)
    start = time.perf_counter()
    for batch in batches:
        train_step(state, batch)
    _sync(device)
    return (time.perf_counter() - start) / len(batches)


def original_run(args, config, vocab_size: int) -> dict:
    """One run of the original code's own timing script at this shape; its JSON line."""
    m, graph = config.model, "absorb" if config.diffusion.graph == "absorbing" else "uniform"
    command = [args.original_python, str(args.original_tool), "--repo-tree", args.original_tree]
    command += ["--hidden", m.hidden_size, "--blocks", m.n_blocks, "--heads", m.n_heads, "--cond", m.cond_dim]
    command += ["--length", m.seq_len, "--vocab", vocab_size, "--graph", graph, "--batch", args.batch_size]
    command += ["--steps", args.original_steps, "--warmup", 3, "--threads", torch.get_num_threads()]
    command += ["--sample-steps", 0]
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    add_shape_argument(parser)
    parser.add_argument("--batch", type=int, default=0, help="sequences per step (0: the preset's)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant (compilation happens here)")
    parser.add_argument("--variants", default="eager,bf16,compile,compile+bf16")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--original-tree", help="a copy of the original SEDD code: also time it, between rounds")
    parser.add_argument("--original-python", default="python", help="the interpreter that runs the original code")
    parser.add_argument("--original-tool", type=Path, default=TOOL)
    parser.add_argument("--original-steps", type=int, default=15)
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--png", type=Path, help="a bar chart of tokens/s per variant (and the original code)")
    args = parser.parse_args()

    config = load_config(args.preset, args.shape)
    if args.batch:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, batch_size=args.batch))
    args.batch_size = config.train.batch_size
    device = torch.device(args.device)
    tokenizer = build_tokenizer(config.data.tokenizer, config.data.source)
    names = args.variants.split(",")
    states, setup_seconds = {}, {}
    generator = torch.Generator().manual_seed(0)
    x_0 = torch.randint(0, tokenizer.vocab_size, (args.batch_size, config.model.seq_len), generator=generator)
    for name in names:
        start = time.perf_counter()
        states[name] = make_state(config, tokenizer, device, bf16="bf16" in name, compile="compile" in name)
        warm = [states[name].objective.draw(x_0, generator) for _ in range(args.warmup)]
        time_steps(states[name], [{k: v.to(device) for k, v in b.items()} for b in warm], device)
        setup_seconds[name] = time.perf_counter() - start
    objective = states[names[0]].objective
    batches = [{k: v.to(device) for k, v in objective.draw(x_0, generator).items()} for _ in range(args.steps)]

    seconds = {name: [] for name in names}
    original = []
    for _ in range(args.rounds):
        for name in names:
            seconds[name].append(time_steps(states[name], batches, device))
        if args.original_tree:
            original.append(original_run(args, config, tokenizer.vocab_size)["train_tokens_per_s"])
    peaks = {"float32": matmul_peak(torch.float32, device)}
    if any("bf16" in name for name in names) and fast_bf16(device):
        peaks["bfloat16"] = matmul_peak(torch.bfloat16, device)
    result = report(args, config, states, names, seconds, setup_seconds, peaks, original, device)
    print(json.dumps(result, indent=2))
    if args.png:
        plot(result, args.png)


def cpu_model() -> str:
    """The processor's marketing name where Linux tells it (``platform.processor()`` says only x86_64)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = result["variants"]
    names = list(variants)
    speeds = [v["tokens_per_second"] for v in variants.values()]
    notes = [f"{100 * v['fraction_of_matmul_peak']:.0f}% of the {v['peak_precision']} peak" for v in variants.values()]
    original = result.get("original_tokens_per_second")
    if original:
        names.append("original SEDD (float32)")
        speeds.append(statistics.median(original))
        notes = [
            f"{n}, {v['speedup_vs_original']:.2f}x the original" for n, v in zip(notes, variants.values(), strict=True)
        ]
        notes.append("")
    figure, axis = plt.subplots(figsize=(8, 0.45 * len(names) + 1.3))
    axis.barh(range(len(names)), speeds, color=["tab:blue"] * len(result["variants"]) + ["tab:grey"] * bool(original))
    for i, (speed, note) in enumerate(zip(speeds, notes, strict=True)):
        axis.text(speed, i, f" {speed:,.0f}  {note}", va="center", fontsize=8)
    axis.set_yticks(range(len(names)), names, fontsize=8)
    axis.invert_yaxis()
    axis.set(xlim=(0, 2.0 * max(speeds)), xlabel="training tokens per second")
    peaks = ", ".join(f"{k} {v:.2f}" for k, v in result["matmul_peak_tflops"].items())
    axis.set_title(f"{result['preset']}, {result['tokens_per_step']:,} tokens per step, {result['cpu_threads']} "
                   f"threads of {result['cpu']}\nmatmul peak (TFLOP/s): {peaks}", fontsize=8)  # fmt: skip
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def report(args, config, states, names, seconds, setup_seconds, peaks, original, device) -> dict:
    tokens = args.batch_size * config.model.seq_len
    flops = training_flops_per_token(states[names[0]].model)
    median = {name: statistics.median(seconds[name]) for name in names}
    variants = {}
    for name in names:
        precision = "bfloat16" if "bf16" in name and fast_bf16(device) else "float32"
        tokens_per_second = tokens / median[name]
        variants[name] = {
            "tokens_per_second": tokens_per_second,
            "median_step_seconds": median[name],
            f"speedup_vs_{names[0]}": median[names[0]] / median[name],
            "model_tflops": flops * tokens_per_second / 1e12,
            "fraction_of_matmul_peak": flops * tokens_per_second / peaks[precision],
            "peak_precision": precision,
            "setup_seconds": setup_seconds[name],
        }
        if original:
            variants[name]["speedup_vs_original"] = tokens_per_second / statistics.median(original)
    result = {
        "benchmark": "train_step",
        "preset": args.preset,
        "shape_overrides": args.shape,
        "objective": config.objective,
        "device": str(device),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "cpu": cpu_model(),
        "tokens_per_step": tokens,
        "model_flops_per_token": flops,
        "matmul_peak_tflops": {k: v / 1e12 for k, v in peaks.items()},
        "native_bf16": fast_bf16(device),
        "variants": variants,
    }
    if original:
        result["original_tokens_per_second"] = original
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
