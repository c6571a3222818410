"""Repeated data: diffusion and autoregression trained for many epochs on a small slice of text.

Each model (the ``tiny`` diffusion model, the ``tiny-ar`` model, and the AR model with the regularisation a fair
comparison needs: dropout and weight decay) trains on the first ``--chars`` characters of the embedded corpus
for the same steps and batch, saving a checkpoint every ``--every`` steps. Every checkpoint is then scored by
``scorediff eval`` on held-out text from the end of the corpus (other plays, never trained on): the diffusion
bound or the exact AR likelihood, in bits per character. Reports each model's best held-out score over the run,
the step and epoch where it fell, the ratio of diffusion's best to each AR model's best, and the curves. Writes
JSON and a PNG.

    python benchmarks/repeated_data.py                     # 200k chars, 6,000 steps of 16 x 128, 3 models
    python benchmarks/repeated_data.py --chars 50000 --steps 4000
    python benchmarks/repeated_data.py --merge A/repeated_data.json B/repeated_data.json --out DIR  # models run apart
    python benchmarks/repeated_data.py --quick             # a smoke check in a few minutes
"""

from __future__ import annotations

import argparse
import json
import lzma
import platform
import sys
import time
from datetime import datetime
from pathlib import Path

import torch

from scorediff.cli import main as cli
from scorediff.config import load_config
from scorediff.data.sources import EMBEDDED
from scorediff.data.tokenizers import CharTokenizer
from scorediff.training import train

MODELS = {
    "diffusion": "tiny",
    "ar": "tiny-ar",
    "ar-regularised": "tiny-ar,model.dropout=0.1,optim.weight_decay=0.1",
}
HELD_OUT_FRACTION = 0.1  # the last tenth of the corpus: plays the slice never reaches


def write_texts(out: Path, chars: int) -> tuple[Path, Path, Path]:
    """The training slice (the corpus's first ``chars`` characters), the held-out text (its last tenth) and the
    character tokenizer of the whole corpus (so held-out text has no character the models cannot score)."""
    with lzma.open(EMBEDDED["shakespeare"], "rt", encoding="utf-8") as handle:
        corpus = handle.read()
    held_start = int(len(corpus) * (1 - HELD_OUT_FRACTION))
    if chars > held_start:
        raise SystemExit(f"--chars must be at most {held_start} (the held-out text is the corpus's last tenth)")
    train_path, held_path = out / "train.txt", out / "heldout.txt"
    train_path.write_text(corpus[:chars], encoding="utf-8")
    held_path.write_text(corpus[held_start:], encoding="utf-8")
    return train_path, held_path, CharTokenizer.from_texts([corpus]).save(out)


def train_model(name: str, spec: str, data: Path, tokenizer: Path, args, out: Path) -> dict:
    preset, *overrides = spec.split(",")
    run = [
        f"data.source={data}", f"data.tokenizer={tokenizer}", "data.val_fraction=0.01",
        f"train.batch_size={args.batch}",
        f"train.max_steps={args.steps}", "train.time_budget_minutes=0", "train.max_minutes=0", "train.eval_every=0",
        f"train.save_every={args.every}", "train.keep_last=1000", "train.preview_samples=0", "train.compile=false",
        f"train.seed={args.seed}", f"train.out_dir={out}", f"train.run_name={name}",
    ]  # fmt: skip
    config = load_config(preset, [*run, *overrides])
    start = time.perf_counter()
    result = train(config, progress=False)
    return {"run_dir": result.run_dir, "train_seconds": time.perf_counter() - start, "overrides": overrides}


def score_checkpoints(run_dir: Path, held: Path, chars: int, tokens_per_step: int, args) -> list[dict]:
    """Held-out bits per character of every saved checkpoint (EMA weights), through ``scorediff eval``."""
    points = []
    for checkpoint in sorted((run_dir / "checkpoints").iterdir()):
        step = int(checkpoint.name.removeprefix("step_"))
        report = checkpoint.parent.parent / f"heldout_{step:08d}.json"
        command = ["eval", "--checkpoint", str(checkpoint), "--data", str(held), "--num-t", str(args.num_t),
                   "--max-windows", str(args.windows), "--json", str(report)]  # fmt: skip
        if cli(command) != 0:
            raise SystemExit(f"scorediff eval failed on {checkpoint}")
        result = json.loads(report.read_text())
        points.append({"step": step, "epochs": step * tokens_per_step / chars, **{
            k: result[k] for k in ("bits_per_char", "bits_per_char_ci95", "exact")}})  # fmt: skip
        print(json.dumps({"run": run_dir.name, **points[-1]}), flush=True)
    return points


def summarise(models: dict) -> dict:
    """Each model's best held-out score, and the ratio of the diffusion model's best to each AR model's."""
    best = {name: min(entry["curve"], key=lambda p: p["bits_per_char"]) for name, entry in models.items()}
    summary = {name: {"best_bits_per_char": p["bits_per_char"], "best_step": p["step"], "best_epochs": p["epochs"],
                      "last_bits_per_char": models[name]["curve"][-1]["bits_per_char"]}
               for name, p in best.items()}  # fmt: skip
    if "diffusion" in best:
        for name in best:
            if name != "diffusion":
                ratio = best["diffusion"]["bits_per_char"] / best[name]["bits_per_char"]
                summary[name]["diffusion_best_over_this_best"] = ratio
    return summary


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    for name, entry in results["models"].items():
        curve = entry["curve"]
        kind = "exact NLL" if curve[0]["exact"] else "bound"
        axes.plot([p["epochs"] for p in curve], [p["bits_per_char"] for p in curve], "o-", label=f"{name} ({kind})")
    axes.set_xlabel(f"epochs over the {results['chars']:,}-character slice")
    axes.set_ylabel(f"held-out bits per character ({results['windows']} windows of other plays)")
    axes.set_title("Repeated data: same shape, steps and batch")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def merge(paths: list[Path], out: Path) -> None:
    """The models of several ``repeated_data.json`` files (one slice, steps and batch, run apart) as one result."""
    parts = [json.loads(path.read_text()) for path in paths]
    setting = ("chars", "steps", "batch", "windows", "num_t")
    if len({tuple(part[key] for key in setting) for part in parts}) != 1:
        raise SystemExit(f"--merge takes results with the same {', '.join(setting)}")
    results = {**parts[0], "commands": [part["command"] for part in parts], "models": {}}
    for part in parts:
        results["models"].update(part["models"])
    results["summary"] = summarise(results["models"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "repeated_data.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out / "repeated_data.png")
    print(json.dumps(results["summary"], indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="name=preset,section.key=value,... (default: MODELS)")
    parser.add_argument("--chars", type=int, default=200_000, help="characters of the training slice")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--every", type=int, default=500, help="steps between scored checkpoints")
    parser.add_argument("--windows", type=int, default=128, help="held-out windows scored at each checkpoint")
    parser.add_argument("--num-t", type=int, default=16, help="diffusion: Monte Carlo times per window")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a smoke check: 20k chars, 150 steps")
    parser.add_argument("--out", type=Path, help="folder for runs, JSON and PNG (default runs/repeated-<time>)")
    parser.add_argument("--merge", type=Path, nargs="*", help="repeated_data.json files of models run apart")
    args = parser.parse_args()
    if args.merge:
        return merge(args.merge, args.out or Path("."))
    if args.quick:
        args.chars, args.steps, args.every, args.windows, args.num_t = 20_000, 150, 50, 16, 4
    specs = dict(spec.split("=", 1) for spec in args.models) if args.models else MODELS
    out = args.out or Path("runs") / f"repeated-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    train_path, held, tokenizer = write_texts(out, args.chars)
    results = {
        "benchmark": "repeated_data", "command": " ".join(["python", *sys.argv]),
        "date": datetime.now().isoformat(timespec="seconds"), "machine": platform.processor() or platform.machine(),
        "cores": torch.get_num_threads(), "torch": torch.__version__, "chars": args.chars, "steps": args.steps,
        "batch": args.batch, "windows": args.windows, "num_t": args.num_t, "models": {},
    }  # fmt: skip
    for name, spec in specs.items():
        trained = train_model(name, spec, train_path, tokenizer, args, out)
        seq_len = load_config(spec.split(",")[0]).model.seq_len
        curve = score_checkpoints(trained["run_dir"], held, args.chars, args.batch * seq_len, args)
        results["models"][name] = {"spec": spec, "train_seconds": trained["train_seconds"], "curve": curve}
        results["summary"] = summarise(results["models"])
        (out / "repeated_data.json").write_text(json.dumps(results, indent=2) + "\n")  # partial results as they come
    plot(results, out / "repeated_data.png")
    print(json.dumps(results["summary"], indent=2))
    print(f"wrote {out / 'repeated_data.json'} and {out / 'repeated_data.png'}")


if __name__ == "__main__":
    main()
