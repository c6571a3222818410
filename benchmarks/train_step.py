"""Training-step throughput of a preset on this machine: eager float32 against the CPU/GPU speed options.

Every variant runs the same optimizer steps (forward, score entropy, backward, clip, AdamW) on the same
random batches, interleaved round by round so that machine noise hits them alike; the JSON reports
tokens/s per variant and each one's ratio to eager float32 measured in this run.

    python benchmarks/train_step.py --preset tiny --rounds 5 --steps 10
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import time

import torch

from scorediff.builders import build_graph, build_model, build_schedule
from scorediff.config import load_config
from scorediff.data.prepare import build_tokenizer
from scorediff.losses import sample_times, weighted_score_entropy
from scorediff.training.distributed import fast_bf16
from scorediff.training.optim import make_optimizer


def make_variant(config, graph, device, *, bf16: bool, compile: bool):
    torch.manual_seed(0)
    model = build_model(config, graph).to(device)
    optimizer = make_optimizer(model, config.optim, fused=device.type == "cuda")
    network = torch.compile(model) if compile else model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    return model, network, optimizer, autocast


def step(variant, graph, schedule, x_0, t, x_t):
    model, network, optimizer, autocast = variant
    with autocast:
        loss = weighted_score_entropy(network, graph, schedule, x_0, t, x_t=x_t).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=0, help="sequences per step (0: the preset's)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant (compilation happens here)")
    parser.add_argument("--variants", default="eager,bf16,compile,compile+bf16")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    config = load_config(args.preset)
    device = torch.device(args.device)
    vocab_size = build_tokenizer(config.data.tokenizer, config.data.source).vocab_size
    graph, schedule = build_graph(config.diffusion, vocab_size), build_schedule(config.diffusion)
    batch, seq_len = args.batch or config.train.batch_size, config.model.seq_len
    generator = torch.Generator().manual_seed(0)
    x_0 = torch.randint(0, vocab_size, (batch, seq_len), generator=generator)
    t = sample_times(batch, generator=generator)
    x_t = graph.sample_transition(x_0, schedule.total(t), generator=generator)
    x_0, t, x_t = x_0.to(device), t.to(device), x_t.to(device)

    names = args.variants.split(",")
    variants, compile_seconds = {}, {}
    for name in names:
        start = time.perf_counter()
        variants[name] = make_variant(config, graph, device, bf16="bf16" in name, compile="compile" in name)
        for _ in range(args.warmup):
            step(variants[name], graph, schedule, x_0, t, x_t)
        compile_seconds[name] = time.perf_counter() - start
    seconds = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(args.steps):
                step(variants[name], graph, schedule, x_0, t, x_t)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds[name].append((time.perf_counter() - start) / args.steps)

    tokens = batch * seq_len
    median = {name: statistics.median(seconds[name]) for name in names}
    result = {
        "benchmark": "train_step",
        "preset": args.preset,
        "device": str(device),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "tokens_per_step": tokens,
        "native_bf16": fast_bf16(device),
        "variants": {
            name: {
                "tokens_per_second": tokens / median[name],
                "median_step_seconds": median[name],
                "speedup_vs_" + names[0]: median[names[0]] / median[name],
                "setup_seconds": compile_seconds[name],
            }
            for name in names
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
