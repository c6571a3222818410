"""Likelihood at matched compute: diffusion (absorbing, uniform, block diffusion) against the autoregressive baseline.

Each model trains with the same steps, batch, optimizer and data (matched tokens) through the library's
trainer, then is scored on the whole validation split through its objective's ``nll`` (the code path of
``scorediff eval``): an upper bound for diffusion, the exact likelihood for the autoregressive model. A
diffusion bound is estimated twice with independent seeds; the spread between the two gives its Monte Carlo
error, and ``--num-t`` is raised until that error is under ``--mc-target`` bits per character. Writes JSON and
a PNG of validation bits per character against training tokens, and prints the ratios to the AR model.

    python benchmarks/quality.py                        # AR, absorbing, block diffusion (2, 4, 16), uniform: 3.5 h
    python benchmarks/quality.py --quick                # a smoke check in a few minutes
    python benchmarks/quality.py --models "radd=tiny,model.time_conditioning=false" --steps 600
"""

from __future__ import annotations

import argparse
import json
import math
import time
from datetime import datetime
from pathlib import Path

import torch
from shapes import add_shape_argument

from scorediff.config import load_config
from scorediff.loading import load
from scorediff.model import training_flops_per_token
from scorediff.training import train
from scorediff.training.distributed import DistInfo
from scorediff.training.setup import prepare_data

MODELS = {
    "ar": "tiny-ar",  # first: the others' paired differences are taken against it
    "absorbing": "tiny",
    "block4": "tiny-block",
    "block2": "tiny-block,model.block_size=2",
    "block16": "tiny-block,model.block_size=16",
    # block diffusion runs most of the network twice per token: 1,291 steps are the FLOPs of 2,500 plain ones (at
    # --steps 2500; training_flops_per_token gives 39.8M per token against 20.6M)
    "block4-matched-flops": "tiny-block,train.max_steps=1291",
    # the uniform graph needs a time-conditioned network, and SEDD's geometric schedule
    "uniform": "tiny,diffusion.graph=uniform,diffusion.schedule=geometric,model.time_conditioning=true,"
    "diffusion.mask_count=false",
}


def parse_models(specs: list[str] | None) -> dict[str, tuple[str, list[str]]]:
    """``name=preset,section.key=value,...`` for each model (default: absorbing, uniform, ar)."""
    pairs = [spec.split("=", 1) for spec in specs] if specs else list(MODELS.items())
    out = {}
    for name, rest in pairs:
        preset, *overrides = rest.split(",")
        out[name] = (preset, overrides)
    return out


def train_one(name, preset, overrides, args, out_dir: Path) -> dict:
    run = [
        f"train.max_steps={args.steps}",
        f"train.batch_size={args.batch}",
        f"optim.decay_fraction={args.decay_fraction}",
        "train.time_budget_minutes=0",
        "train.max_minutes=0",
        f"train.eval_every={args.eval_every}",
        f"train.save_every={args.steps}",
        "train.preview_samples=0",
        f"train.seed={args.seed}",
        f"train.out_dir={out_dir}",
        f"train.run_name={name}",
    ]
    config = load_config(preset, [*run, *args.shape, *overrides])  # a model's own overrides (its steps, say) win
    start = time.perf_counter()
    result = train(config, progress=not args.quiet)
    return {"config": config, "result": result, "train_seconds": time.perf_counter() - start}


def score(run_dir: Path, args) -> dict:
    """Bits per char over the whole validation split, with a 95% CI over windows and the Monte Carlo error."""
    loaded = load(run_dir)
    windows = prepare_data(loaded.config, DistInfo(), loaded.path).val.spread_windows(args.max_windows)
    chars = sum(len(loaded.tokenizer.decode(row.tolist())) for row in windows)
    start = time.perf_counter()
    num_t = args.num_t
    while True:
        draws = [per_window_nats(loaded, windows, num_t, seed) for seed in (args.seed, args.seed + 1)]
        estimate = (draws[0] + draws[1]) / 2
        # each draw's per-window error is independent: the mean of the two has error sd(a - b) / 2 / sqrt(N)
        mc_error = float((draws[0] - draws[1]).std()) / 2 / math.sqrt(len(windows)) if not loaded.objective.exact else 0
        to_bits = len(windows) / chars / math.log(2)  # nats per window -> bits per char
        if loaded.objective.exact or mc_error * to_bits < args.mc_target or num_t >= 256:
            break
        num_t *= 2
    mean = float(estimate.mean())
    half = 1.96 * float(estimate.std()) / math.sqrt(len(windows))
    per_window_bits = estimate * to_bits
    return {
        "per_window_bits": per_window_bits,
        "bits_per_char": mean * to_bits,
        "bits_per_char_ci95": [(mean - half) * to_bits, (mean + half) * to_bits],
        "mc_error_bits_per_char": mc_error * to_bits,
        "num_t": None if loaded.objective.exact else 2 * num_t,
        "exact": loaded.objective.exact,
        "windows": len(windows),
        "characters": chars,
        "eval_seconds": time.perf_counter() - start,
        "parameters": loaded.model.num_parameters(),
    }


def per_window_nats(loaded, windows: torch.Tensor, num_t: int, seed: int, batch_size: int = 32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    parts = [
        loaded.objective.nll(loaded.model, windows[i : i + batch_size], generator=generator, num_t=num_t)
        for i in range(0, len(windows), batch_size)
    ]
    return torch.cat(parts).double()


def curve(run_dir: Path, tokens_per_step: int, chars_per_token: float) -> list[list[float]]:
    """(training tokens, validation bits per char) at each in-training evaluation."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    return [
        [r["step"] * tokens_per_step, r["val_bits_per_token"] / chars_per_token]
        for r in records
        if "val_bits_per_token" in r
    ]


def plot(results: dict, path: Path) -> None:
    """Bits per character against training tokens and against training FLOPs (block diffusion runs every token
    twice), one curve per model, the whole-split estimate as a star with its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, panels = plt.subplots(1, 2, figsize=(13, 4.8))
    for axes, per in zip(panels, ("tokens", "flops"), strict=True):
        for name, entry in results["models"].items():
            scale = entry.get("training_flops_per_token", 1.0) if per == "flops" else 1.0
            points = entry["curve"]
            kind = "exact" if entry["exact"] else "bound"
            xs = [p[0] * scale for p in points]
            line = axes.plot(xs, [p[1] for p in points], "o-", label=f"{name} ({kind})")[0]
            low, high = entry["bits_per_char_ci95"]
            axes.errorbar(
                [xs[-1] if xs else 0],
                [entry["bits_per_char"]],
                yerr=[[entry["bits_per_char"] - low], [high - entry["bits_per_char"]]],
                fmt="*",
                markersize=12,
                color=line.get_color(),
            )
        axes.set_xlabel("training tokens" if per == "tokens" else "training FLOPs (matmuls)")
        axes.set_ylabel("validation bits per character")
        axes.grid(alpha=0.3)
    windows = next(iter(results["models"].values()))["windows"]
    panels[0].set_title(f"Shakespeare characters, same batch (star: {windows} windows, 95% CI)")
    panels[1].set_title("the same against compute")
    panels[1].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="name=preset,section.key=value,... (default: MODELS)")
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--batch", type=int, default=32, help="sequences per step, the same for every model")
    parser.add_argument(
        "--decay-fraction", type=float, default=1.0,
        help="optim.decay_fraction for every model (1: cosine from the warmup's end, as the published tables)",
    )  # fmt: skip
    add_shape_argument(parser)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--num-t", type=int, default=8, help="starting Monte Carlo times per window per seed")
    parser.add_argument("--mc-target", type=float, default=0.01, help="Monte Carlo error to reach, bits per char")
    parser.add_argument("--max-windows", type=int, default=0, help="validation windows (0: the whole split)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="300 steps, 256 windows: a smoke check")
    parser.add_argument("--out", type=Path, help="folder for runs, JSON and PNG (default: runs/quality-<time>)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.eval_every, args.max_windows, args.mc_target = 300, 100, 256, 0.03
        args.models = args.models or ["ar=tiny-ar", "absorbing=tiny", "block4=tiny-block"]
    args.max_windows = args.max_windows or None
    out = args.out or Path("runs") / f"quality-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    results = {"benchmark": "quality", "steps": args.steps, "batch": args.batch, "seed": args.seed}
    results["decay_fraction"] = args.decay_fraction
    results["shape_overrides"] = args.shape
    results["torch"] = torch.__version__
    results["models"] = {}
    first = None
    for name, (preset, overrides) in parse_models(args.models).items():
        trained = train_one(name, preset, overrides, args, out)
        config, result = trained["config"], trained["result"]
        entry = score(result.run_dir, args)
        tokens_per_step = config.train.batch_size * config.model.seq_len
        chars_per_token = entry["characters"] / (entry["windows"] * config.model.seq_len)
        tokens_seen = config.train.max_steps * tokens_per_step
        flops = training_flops_per_token(load(result.run_dir).model)
        entry.update(
            preset=preset,
            overrides=overrides,
            objective=config.objective,
            block_size=config.model.block_size,
            steps=config.train.max_steps,
            tokens_seen=tokens_seen,
            training_flops_per_token=flops,
            training_pflops=flops * tokens_seen / 1e15,
            train_seconds=trained["train_seconds"],
            train_tokens_per_second=result.tokens_per_second,
            curve=curve(result.run_dir, tokens_per_step, chars_per_token),
        )
        per_window = entry.pop("per_window_bits")
        first = first if results["models"] else (name, per_window)
        if first[0] != name:  # the same windows: the paired difference is far more precise than two CIs
            difference = per_window - first[1]
            half = 1.96 * float(difference.std()) / math.sqrt(len(difference))
            mean = float(difference.mean())
            entry[f"minus_{first[0]}_bits_per_char"] = [mean, [mean - half, mean + half]]
        results["models"][name] = entry
        print(json.dumps({name: {k: v for k, v in entry.items() if k != "curve"}}), flush=True)
    exact = [name for name, entry in results["models"].items() if entry["exact"]]
    if exact:
        reference = results["models"][exact[0]]["bits_per_char"]
        results["ratios_to_" + exact[0]] = {
            name: entry["bits_per_char"] / reference for name, entry in results["models"].items() if name != exact[0]
        }
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out / "quality.png")
    print(json.dumps({k: v for k, v in results.items() if k != "models"}, indent=2))
    print(f"wrote {out / 'quality.json'} and {out / 'quality.png'}")


if __name__ == "__main__":
    main()
