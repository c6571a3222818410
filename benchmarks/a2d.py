"""AR-to-diffusion adaptation (A2D) against diffusion trained from scratch, at equal training compute.

Three runs at the presets' shape, batch and length, each stopped by ``train.max_steps`` alone (no time budget,
so the machine's load cannot change the steps): (1) ``ar``, the ``tiny-llama-ar`` model, ``--ar-steps`` (N1)
steps; (2) ``adapted``, ``--adapt-steps`` (N2) steps of ``tiny-a2d-block --init <run (1)>`` (``--into block``,
blocks of 4) or ``tiny-a2d`` (``--into masked``); (3) ``scratch``, the ``tiny-llama`` diffusion model, N1 + N2
steps, or N1 + 2 N2 after block adaptation, whose steps run every token twice (noised and clean). All three are
llamas of one width and depth, so those steps at equal batch and length are equal compute; the matrix-product
FLOPs of each (``scorediff.model.flops``) are reported to show how equal. Each model is then scored by
``scorediff eval`` on the same windows of the runs' validation split (``--windows``, ``--num-t``): the AR model's
exact NLL, the diffusion models' bounds, in bits per character. The ratios adapted / scratch (issue 37's target:
below 1) and adapted / AR, and the validation curves the trainer logged against total steps (the adapted model's
start at N1), go to ``DIR/a2d.json`` and ``DIR/a2d.png``.

    python benchmarks/a2d.py --out DIR                          # the three runs one after another
    # on two cores: (1) and (3) side by side, one thread each, then (2); the last stage writes the report
    OMP_NUM_THREADS=1 python benchmarks/a2d.py --stage ar --out DIR &
    OMP_NUM_THREADS=1 python benchmarks/a2d.py --stage scratch --out DIR; wait
    python benchmarks/a2d.py --stage adapted --out DIR
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

from scorediff.cli import main as cli
from scorediff.config import load_config
from scorediff.loading import load
from scorediff.model.flops import training_flops_per_token
from scorediff.training import train

PRESETS = {"ar": "tiny-llama-ar", "adapted": "tiny-a2d-block", "scratch": "tiny-llama"}
ADAPTED = {"block": "tiny-a2d-block", "masked": "tiny-a2d"}
#: settings every stage of one report must share
SETTINGS = ("into", "ar_steps", "adapt_steps", "batch", "windows", "num_t", "eval_every", "seed", "overrides")


def stage_steps(stage: str, args) -> int:
    scratch = args.ar_steps + args.adapt_steps * (2 if args.into == "block" else 1)  # a block step runs 2 L tokens
    return {"ar": args.ar_steps, "adapted": args.adapt_steps, "scratch": scratch}[stage]


def train_stage(stage: str, args) -> dict:
    """Train one of the three models to its steps; ``adapted`` starts from the ``ar`` run's weights."""
    run = [
        f"train.batch_size={args.batch}", f"train.max_steps={stage_steps(stage, args)}",
        "train.time_budget_minutes=0", "train.max_minutes=0", f"train.eval_every={args.eval_every}",
        f"train.eval_windows={args.windows}", f"train.eval_num_t={args.num_t}", "train.save_every=0",
        "train.preview_samples=0", "train.compile=false", f"train.seed={args.seed}",
        f"train.out_dir={args.out / 'runs'}", f"train.run_name={stage}", f"data.cache_dir={args.out / 'cache' / stage}",
    ]  # fmt: skip
    if stage == "adapted":
        parent = args.out / "runs" / "ar"
        if not (parent / "config.json").exists():
            raise SystemExit(f"--stage adapted needs the ar run in {parent}: run --stage ar first")
        run.append(f"train.init={parent}")
    preset = ADAPTED[args.into] if stage == "adapted" else PRESETS[stage]
    config = load_config(preset, [*run, *args.overrides])
    start = time.perf_counter()
    result = train(config, progress=False)
    return {"preset": preset, "run_dir": result.run_dir, "steps": result.step,
            "train_seconds": time.perf_counter() - start}  # fmt: skip


def evaluate(run_dir: Path, args) -> dict:
    """The model's held-out bits per character through ``scorediff eval`` (EMA weights, the run's validation
    split; the AR model's exact NLL, a diffusion model's bound)."""
    report = run_dir / "heldout.json"
    command = ["eval", "--checkpoint", str(run_dir), "--max-windows", str(args.windows), "--num-t", str(args.num_t),
               "--seed", str(args.seed), "--json", str(report)]  # fmt: skip
    if cli(command) != 0:
        raise SystemExit(f"scorediff eval failed on {run_dir}")
    result = json.loads(report.read_text())
    return {key: result[key] for key in ("bits_per_char", "bits_per_char_ci95", "exact", "windows", "tokens")}


def logged(run_dir: Path) -> tuple[float, list[dict]]:
    """The first logged training loss (nats per token) and the validation curve in ``metrics.jsonl``."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    losses = [r for r in records if r.get("loss_nats_per_token") is not None]
    curve = [{"step": r["step"], "val_bits_per_token": r["val_bits_per_token"]}
             for r in records if r.get("val_bits_per_token") is not None]  # fmt: skip
    return losses[0]["loss_nats_per_token"], curve


def run_stage(stage: str, args) -> dict:
    """Train, score and describe one model; writes ``DIR/<stage>.json``."""
    trained = train_stage(stage, args)
    run_dir = trained["run_dir"]
    config = json.loads((run_dir / "config.json").read_text())
    loaded = load(run_dir)
    per_token = training_flops_per_token(loaded.model)
    tokens = trained["steps"] * args.batch * loaded.model.config.seq_len
    first_loss, curve = logged(run_dir)
    entry = {
        **trained, "run_dir": str(run_dir), "init": config["train"]["init"],
        "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in loaded.model.parameters()),
        "flops_per_token": per_token, "train_flops": per_token * tokens, "first_loss_nats_per_token": first_loss,
        "heldout": evaluate(run_dir, args), "curve": curve,
        "settings": {key: getattr(args, key) for key in SETTINGS}, "command": args.command,
    }  # fmt: skip
    (args.out / f"{stage}.json").write_text(json.dumps(entry, indent=2) + "\n")
    print(json.dumps({"stage": stage, "heldout": entry["heldout"], "train_seconds": entry["train_seconds"]}))
    return entry


def summarise(models: dict) -> dict:
    """Bits per character of the three models and the ratios issue 37 asks for, with the compute of each side."""
    bits = {name: entry["heldout"]["bits_per_char"] for name, entry in models.items()}
    adapted_flops = models["ar"]["train_flops"] + models["adapted"]["train_flops"]
    return {
        "ar_exact_bits_per_char": bits["ar"],
        "adapted_bound_bits_per_char": bits["adapted"],
        "scratch_bound_bits_per_char": bits["scratch"],
        "adapted_over_scratch": bits["adapted"] / bits["scratch"],
        "adapted_over_ar": bits["adapted"] / bits["ar"],
        "scratch_over_ar": bits["scratch"] / bits["ar"],
        "adapted_total_steps": models["ar"]["steps"] + models["adapted"]["steps"],
        "scratch_steps": models["scratch"]["steps"],
        "adapted_total_flops": adapted_flops,
        "scratch_flops": models["scratch"]["train_flops"],
        "flops_adapted_over_scratch": adapted_flops / models["scratch"]["train_flops"],
        "target_adapted_below_scratch": bits["adapted"] < bits["scratch"],
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models, summary = results["models"], results["summary"]
    figure, (curves, bars) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [3, 2]})
    offsets = {"ar": 0, "adapted": models["ar"]["steps"], "scratch": 0}
    labels = {"ar": "tiny-llama-ar (exact NLL)", "adapted": f"{models['adapted']['preset']} from the AR run (bound)",
              "scratch": "tiny-llama from scratch (bound)"}  # fmt: skip
    for name, entry in models.items():
        steps = [offsets[name] + p["step"] for p in entry["curve"]]
        curves.plot(steps, [p["val_bits_per_token"] for p in entry["curve"]], "o-", label=labels[name])
    curves.axvline(models["ar"]["steps"], color="grey", linestyle=":", label="adaptation starts")
    curves.set_xlabel("total training steps (the adapted model counts its parent's)")
    curves.set_ylabel("validation bits per character (trainer's evaluation)")
    curves.set_title("Validation during training")
    curves.grid(alpha=0.3)
    curves.legend()
    names = ["ar", "adapted", "scratch"]
    values = [summary[key] for key in ("ar_exact_bits_per_char", "adapted_bound_bits_per_char",
                                       "scratch_bound_bits_per_char")]  # fmt: skip
    bars.bar([f"{n}\n{models[n]['steps']} steps" for n in names], values, color=["C0", "C1", "C2"])
    for index, value in enumerate(values):
        bars.text(index, value, f"{value:.3f}", ha="center", va="bottom")
    bars.set_ylabel(f"held-out bits per character ({results['windows']} windows)")
    bars.set_title(f"adapted / scratch = {summary['adapted_over_scratch']:.3f}, "
                   f"adapted / AR = {summary['adapted_over_ar']:.3f}")  # fmt: skip
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def report(args) -> dict | None:
    """``DIR/a2d.json`` and ``DIR/a2d.png`` once all three stages are in ``DIR`` (None before)."""
    paths = {stage: args.out / f"{stage}.json" for stage in PRESETS}
    if not all(path.exists() for path in paths.values()):
        return None
    models = {stage: json.loads(path.read_text()) for stage, path in paths.items()}
    settings = [entry.pop("settings") for entry in models.values()]
    if any(s != settings[0] for s in settings):
        raise SystemExit(f"the stages in {args.out} were run with different settings: {settings}")
    results = {
        "benchmark": "a2d", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(), "cores": torch.get_num_threads(),
        "torch": torch.__version__, "commands": [entry.pop("command") for entry in models.values()],
        **settings[0], "models": models, "summary": summarise(models),
    }  # fmt: skip
    (args.out / "a2d.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / "a2d.png")
    print(json.dumps(results["summary"], indent=2))
    print(f"wrote {args.out / 'a2d.json'} and {args.out / 'a2d.png'}")
    return results


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--into", choices=sorted(ADAPTED), default="block", help="what the AR model is adapted into")
    parser.add_argument("--ar-steps", type=int, default=600, help="N1: steps of the AR run")
    parser.add_argument("--adapt-steps", type=int, default=600, help="N2: steps of the adaptation")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--windows", type=int, default=64, help="held-out windows scored (and at each validation)")
    parser.add_argument("--num-t", type=int, default=16, help="diffusion: Monte Carlo times per window")
    parser.add_argument("--eval-every", type=int, default=200, help="steps between the trainer's validations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides for all three runs (e.g. model.n_blocks=2)")  # fmt: skip
    parser.add_argument("--stage", choices=[*PRESETS, "all"], default="all", help="train and score one model only")
    parser.add_argument("--out", type=Path, required=True, help="folder for runs, stage results, JSON and PNG")
    args = parser.parse_args(argv)
    if min(args.ar_steps, args.adapt_steps, args.batch, args.windows, args.num_t) < 1 or args.eval_every < 0:
        parser.error("--ar-steps, --adapt-steps, --batch, --windows and --num-t must be positive")
    args.command = shlex.join(["python", "benchmarks/a2d.py", *(sys.argv[1:] if argv is None else argv)])
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for stage in PRESETS if args.stage == "all" else [args.stage]:
        run_stage(stage, args)
    report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
