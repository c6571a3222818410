"""DNA benchmark: species-conditional generation from four bacterial genomes, unconditional Drosophila promoters,
three forward processes compared, and the autoregressive baseline's exact bits per base.

    python benchmarks/dna.py                          # 1,000 steps, 128 windows per class: hours on 2 CPU cores
    python benchmarks/dna.py --steps 600 --samples 64 --windows 1024 --only species-absorbing   # the docs' table: 1.7 h
    python benchmarks/dna.py --steps 4000 --samples 64 --windows 1024 --only species-absorbing --guidance 0 3
    python benchmarks/dna.py --quick                  # 150 steps, fewer samples: a smoke check, about half an hour

Real data comes from two Debian packages, which this script fetches itself with ``apt-get download`` and unpacks
with ``dpkg -x`` into ``--data-dir`` (nothing is installed system-wide, R is not pulled in):

- ``ragout-examples``: 16 complete bacterial reference genomes, E. coli (2), H. pylori (5), S. aureus (5) and
  V. cholerae (4) strains; every strain of a species is one label.
- ``r-bioc-biostrings``: ``extdata/dm3_upstream2000.fa.gz``, 26,454 Drosophila 2 kb upstream regions.

Every model is trained by ``scorediff train`` for the same steps and batch, scored by ``scorediff eval-dna`` on
its own validation windows (chunks of records that training never saw). Writes ``dna.json`` and ``dna.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ("ragout-examples", "r-bioc-biostrings")
SPECIES = {"ecoli": "E.Coli", "hpylori": "H.Pylori", "saureus": "S.Aureus", "vcholerae": "V.Cholerae"}
TIME_CONDITIONED = ["--model.time_conditioning=true", "--diffusion.mask_count=false"]
# the absorbing models sample exactly (first-hitting: one position per network call, no discretisation error);
# the others take --sample-steps analytic steps
EXACT = "first_hitting"
SPECIES_MODELS = {  # name: (preset, overrides, guidance weights evaluated, predictor)
    "absorbing": ("dna", [], [0.0, 1.0, 3.0], EXACT),
    "uniform": (
        "dna", ["--diffusion.graph=uniform", "--model.scale_by_sigma=false", *TIME_CONDITIONED], [3.0], "analytic"
    ),
    "k80": (
        "dna",
        ["--diffusion.graph=k80", "--diffusion.kappa=2.0", "--model.scale_by_sigma=false", *TIME_CONDITIONED],
        [3.0],
        "analytic",
    ),
    "ar": ("dna-ar", [], [0.0], None),
}  # fmt: skip
PROMOTER_MODELS = {"absorbing": ("dna", [], [0.0], EXACT), "ar": ("dna-ar", [], [0.0], None)}


def fetch_data(folder: Path) -> dict:
    """The genomes and promoters, downloaded and unpacked once into ``folder``."""
    root = folder / "root"
    references = root / "usr/share/doc/ragout/examples"
    promoters = root / "usr/lib/R/site-library/Biostrings/extdata/dm3_upstream2000.fa.gz"
    if not (references.is_dir() and promoters.is_file()):
        folder.mkdir(parents=True, exist_ok=True)
        print(f"fetching {', '.join(PACKAGES)} with apt-get download into {folder} (unpacked there with dpkg -x)")
        subprocess.run(["apt-get", "download", *PACKAGES], cwd=folder, check=True, stdout=subprocess.DEVNULL)
        for deb in folder.glob("*.deb"):
            subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    species = {name: str(references / where / "references" / "*.fasta.gz") for name, where in SPECIES.items()}
    return {"species": species, "promoters": str(promoters)}


def scorediff(*argv: str) -> float:
    """Run the command line in a fresh process; returns its wall time in seconds."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "scorediff", *argv], check=True)
    return time.perf_counter() - started


def train_and_score(name: str, spec: tuple, data_args: list[str], args, out: Path) -> dict:
    preset, overrides, guidance, predictor = spec
    if args.guidance is not None and guidance != [0.0]:  # a conditional model: the weights asked for
        guidance = args.guidance
    run = out / name
    report = run / "eval-dna.json"
    sampling = ["--predictor", predictor, "--steps", str(args.sample_steps)] if predictor else []
    if report.exists():  # a run of an earlier invocation into the same --out: reuse it
        return json.loads((run / "benchmark.json").read_text())
    if (run / "checkpoints").is_dir():
        train_seconds = json.loads((run / "train_seconds.json").read_text())
    else:
        train_seconds = _train(name, preset, overrides, data_args, args, out)
        (run / "train_seconds.json").write_text(json.dumps(train_seconds))
    eval_seconds = scorediff(
        "eval-dna", "--checkpoint", str(run), "--guidance", *map(str, guidance), "--num-samples",
        str(args.samples), *sampling, "--max-windows", str(args.windows), "--json",
        str(report), "--plots", str(run / "plots"),
    )  # fmt: skip
    result = json.loads(report.read_text())
    result.update(name=name, train_seconds=train_seconds, eval_seconds=eval_seconds, steps=args.steps)
    result.update(samples_per_class=args.samples, real_windows=args.windows, predictor=predictor)
    (run / "benchmark.json").write_text(json.dumps(result))
    print(json.dumps({k: result[k] for k in ("name", "bits_per_base", "train_seconds", "eval_seconds")}), flush=True)
    return result


def _train(name, preset, overrides, data_args, args, out: Path) -> float:
    return scorediff(
        "train", "--config", preset, *data_args, *overrides, "--out", str(out), "--name", name, "--quiet",
        "--num-samples", "0", f"--train.max_steps={args.steps}", "--train.time_budget_minutes=0",
        "--train.max_minutes=0", f"--train.eval_every={args.steps}", f"--train.save_every={args.steps}",
        f"--data.cache_dir={out / 'cache'}",
    )  # fmt: skip


def summary_rows(results: dict) -> list[dict]:
    rows = []
    for task, models in results.items():
        for name, result in models.items():
            for entry in result["by_guidance"]:
                rows.append({
                    "task": task, "model": name, "guidance": entry["guidance"],
                    "bits_per_base": result["bits_per_base"],
                    "exact": result["exact"], "kmer_js_6": entry["kmer_js"]["6"],
                    "kmer_js_6_real_halves": entry["kmer_js_real_halves"]["6"], "gc_distance": entry["gc_distance"],
                    "discriminator_auroc": entry["discriminator_auroc"],
                    "species_accuracy": entry.get("species_accuracy"),
                    "real_species_accuracy": result["real_species_accuracy"],
                    "compared_windows": entry.get("compared_windows"), "predictor": result.get("predictor"),
                    "train_seconds": result["train_seconds"], "eval_seconds": result["eval_seconds"],
                })  # fmt: skip
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    guided = [r for r in rows if r["task"] == "species" and r["model"] == "absorbing"]
    if guided and guided[0]["species_accuracy"] is not None:
        axes[0].plot([r["guidance"] for r in guided], [r["species_accuracy"] for r in guided], "o-", label="generated")
        axes[0].axhline(guided[0]["real_species_accuracy"], color="grey", linestyle="--", label="real windows")
        axes[0].axhline(0.9 * guided[0]["real_species_accuracy"], color="red", linestyle=":", label="target (0.9x)")
        axes[0].set(xlabel="guidance weight", ylabel="species accuracy", ylim=(0, 1.02), title="species (absorbing)")
        axes[0].legend(fontsize=8)
    labels = [f"{r['task']}\n{r['model']} w={r['guidance']:g}" for r in rows]
    axes[1].bar(range(len(rows)), [r["discriminator_auroc"] for r in rows])
    axes[1].axhline(0.6, color="red", linestyle=":", label="target")
    axes[1].set(ylabel="discriminator AUROC (0.5 ideal)", ylim=(0.4, 1.0), title="real vs generated")
    axes[2].bar(range(len(rows)), [r["kmer_js_6"] for r in rows], label="generated")
    axes[2].plot(range(len(rows)), [r["kmer_js_6_real_halves"] for r in rows], "k_", markersize=20, label="real halves")
    axes[2].axhline(0.05, color="red", linestyle=":", label="target")
    axes[2].set(ylabel="6-mer JS distance", title="k-mer spectrum")
    for axis in axes[1:]:
        axis.set_xticks(range(len(rows)), labels, fontsize=6, rotation=60)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="training steps per model")
    parser.add_argument("--samples", type=int, default=128, help="generated windows per class (or in all)")
    parser.add_argument("--sample-steps", type=int, default=256, help="steps of the models not sampled exactly")
    parser.add_argument(
        "--windows", type=int, default=4096, help="real windows to score and to compare with (as many as generated, "
        "class by class)"
    )  # fmt: skip
    parser.add_argument(
        "--guidance", type=float, nargs="+", help="guidance weights of the conditional models (default: each one's)"
    )
    parser.add_argument("--quick", action="store_true", help="150 steps, 32 samples, 256 windows")
    parser.add_argument("--data-dir", type=Path, default=Path.home() / ".cache" / "scorediff" / "dna-bench")
    parser.add_argument("--out", type=Path, help="folder for runs, JSON and PNG (default: runs/dna-<time>)")
    parser.add_argument(
        "--only",
        nargs="*",
        help="run only these, e.g. species-absorbing promoters-ar (runs already in --out are reused)",
    )
    args = parser.parse_args()
    if args.quick:
        args.steps, args.samples, args.sample_steps, args.windows = 150, 32, 64, 512
    out = args.out or Path("runs") / time.strftime("dna-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    data = fetch_data(args.data_dir)
    species_args = [arg for name, files in data["species"].items() for arg in ("--data", f"{name}={files}")]
    results = {"species": {}, "promoters": {}}
    promoter_args = ["--data", data["promoters"]]
    for task, models, data_args in (
        ("species", SPECIES_MODELS, species_args),
        ("promoters", PROMOTER_MODELS, promoter_args),
    ):
        for name, spec in models.items():
            if args.only is None or f"{task}-{name}" in args.only:
                results[task][name] = train_and_score(f"{task}-{name}", spec, data_args, args, out)
    rows = summary_rows(results)
    promoters = results["promoters"]
    ratio = promoters["absorbing"]["bits_per_base"] / promoters["ar"]["bits_per_base"] if len(promoters) == 2 else None
    summary = {"benchmark": "dna", "steps": args.steps, "threads": os.cpu_count(), "rows": rows,
               "promoters_bits_ratio_diffusion_to_ar": ratio}  # fmt: skip
    (out / "dna.json").write_text(json.dumps({**summary, "results": results}, indent=2))
    plot(rows, out / "dna.png")
    print(json.dumps(summary, indent=2))
    print(f"wrote {out / 'dna.json'} and {out / 'dna.png'}")


if __name__ == "__main__":
    main()
