"""What ``scorediff eval-dna`` shows of its results: the lines it prints and the plots ``--plots`` writes."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from .. import dna_metrics
from . import UsageError


def print_result(result: dict) -> None:
    """The bound, the classifier's accuracy and one line per guidance weight, on stdout."""
    relation = "=" if result["exact"] else "<="
    low, high = result["bits_per_base_ci95"]
    bits = result["bits_per_base"]
    print(f"{result['windows']} real windows; bits per base {relation} {bits:.4f} [{low:.4f}, {high:.4f}]")
    if result["real_species_accuracy"] is not None:
        print(f"species classifier on held-out real windows: accuracy {result['real_species_accuracy']:.3f}")
    for entry in result["by_guidance"]:
        js = ", ".join(f"{k}: {v:.4f}" for k, v in entry["kmer_js"].items())
        js += "; real halves " + ", ".join(f"{v:.4f}" for v in entry["kmer_js_real_halves"].values())
        line = f"guidance {entry['guidance']:g}: k-mer JS {{{js}}}, GC distance {entry['gc_distance']:.4f}, "
        line += f"discriminator AUROC {entry['discriminator_auroc']:.3f}"
        if "species_accuracy" in entry:
            line += f", species accuracy {entry['species_accuracy']:.3f}"
        print(line)


def write_plots(folder: Path, real: dict[str, Tensor], result: dict) -> None:
    """k-mer spectra, GC content and (for a conditional model) species accuracy against guidance, as PNGs."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError('--plots needs matplotlib: pip install "scorediff[plot]"') from None
    folder.mkdir(parents=True, exist_ok=True)
    first = result["by_guidance"][0]
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for axis, k in zip(axes, (3, 6), strict=True):
        a, b = dna_metrics.kmer_spectrum(real["x_0"], k), dna_metrics.kmer_spectrum(first["samples"], k)
        axis.loglog(a.clamp_min(1e-7), b.clamp_min(1e-7), ".", alpha=0.5, markersize=3 if k == 6 else 6)
        axis.plot([1e-7, 1], [1e-7, 1], color="grey", linewidth=0.8)
        js, floor = first["kmer_js"][str(k)], first["kmer_js_real_halves"][str(k)]
        title = f"{k}-mers: JS {js:.3f} (two halves of the real windows: {floor:.3f})"
        axis.set(xlabel="real frequency", ylabel="generated frequency", title=title)
    figure.tight_layout()
    figure.savefig(folder / "kmer_spectra.png", dpi=110)
    plt.close(figure)
    figure, axis = plt.subplots(figsize=(6.5, 4.5))
    bins = torch.linspace(0, 1, 51).tolist()
    axis.hist(dna_metrics.gc_content(real["x_0"]).tolist(), bins=bins, alpha=0.5, density=True, label="real")
    for entry in result["by_guidance"]:
        gc = dna_metrics.gc_content(entry["samples"]).tolist()
        axis.hist(gc, bins=bins, histtype="step", density=True, label=f"generated, guidance {entry['guidance']:g}")
    axis.set(xlabel="GC content of a window", ylabel="density", title="GC content")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(folder / "gc_content.png", dpi=110)
    plt.close(figure)
    if "species_accuracy" in first:
        figure, axis = plt.subplots(figsize=(6.5, 4.5))
        weights = [e["guidance"] for e in result["by_guidance"]]
        axis.plot(weights, [e["species_accuracy"] for e in result["by_guidance"]], "o-", label="generated")
        axis.axhline(result["real_species_accuracy"], color="grey", linestyle="--", label="real (held out)")
        axis.set(xlabel="guidance weight", ylabel="species accuracy", ylim=(0, 1.02), title="species accuracy")
        axis.legend()
        figure.tight_layout()
        figure.savefig(folder / "accuracy_vs_guidance.png", dpi=110)
        plt.close(figure)
