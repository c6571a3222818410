"""How much there is to learn in the DNA benchmark's data: bits per base of k-mer context models counted on the
training split and scored on the validation split, beside which the models' bits per base can be read.

A context model predicts a base from the ``left`` bases before it and the ``right`` bases after it, with
probabilities counted in the training windows (add-1/2 smoothing): ``(left, 0)`` is a Markov chain of that order
(what a left-to-right model can reach with that much context), ``(k, k)`` sees both sides (what a masked model
can use when few positions are masked). ``(0, 0)`` with ``--by-label`` is the base composition of each species.
Counts stay inside the shard segments (no context spans two records or an N).

    python benchmarks/dna_floors.py                           # the four bacterial species of benchmarks/dna.py
    python benchmarks/dna_floors.py --task promoters          # the Drosophila promoters
    python benchmarks/dna_floors.py --shards runs/dna/cache/HASH   # shards that scorediff train wrote
    python benchmarks/dna_floors.py --json floors.json --png floors.png --mark "AR (exact)=1.918"  # models beside
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from scorediff.data.prepare import prepare_dna_shards

CONTEXTS = [(0, 0), (3, 0), (5, 0), (7, 0), (1, 1), (2, 2), (3, 3), (4, 4)]


def read_split(shards: Path, split: str) -> list[tuple[np.ndarray, int]]:
    """The split's segments as (bases int64, label) pairs."""
    tokens = np.fromfile(shards / f"{split}.bin", dtype=np.uint8)
    listed = shards / f"{split}.segments.npy"
    segments = np.load(listed) if listed.exists() else np.array([[0, len(tokens), -1]])
    return [(tokens[start : start + length].astype(np.int64), int(label)) for start, length, label in segments]


def contexts(bases: np.ndarray, left: int, right: int) -> tuple[np.ndarray, np.ndarray]:
    """Each position's context code (the left then the right bases, base 4) and its base."""
    lo, hi = left, len(bases) - right
    if hi <= lo:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    code = np.zeros(hi - lo, dtype=np.int64)
    for shift in [*range(-left, 0), *range(1, right + 1)]:
        code = code * 4 + bases[lo + shift : hi + shift]
    return code, bases[lo:hi]


def context_bits(train, val, left: int, right: int, by_label: bool, smoothing: float = 0.5) -> float:
    """Validation bits per base of the context model counted on ``train`` (one table per label if ``by_label``)."""
    labels = sorted({label for _, label in train}) if by_label else [None]
    size = 4 ** (left + right)
    total_bits, total_bases = 0.0, 0
    for wanted in labels:
        table = np.zeros((size, 4))
        for bases, label in train:
            if wanted is None or label == wanted:
                np.add.at(table, contexts(bases, left, right), 1.0)
        probs = (table + smoothing) / (table + smoothing).sum(axis=1, keepdims=True)
        for bases, label in val:
            if wanted is None or label == wanted:
                code, base = contexts(bases, left, right)
                total_bits -= float(np.log2(probs[code, base]).sum())
                total_bases += len(base)
    return total_bits / total_bases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["species", "promoters"], default="species")
    parser.add_argument("--shards", type=Path, help="a DNA shard folder (default: made from the benchmark's data)")
    parser.add_argument("--data-dir", type=Path, default=Path.home() / ".cache" / "scorediff" / "dna-bench")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--png", type=Path, help="a bar chart of the context models' bits per base")
    parser.add_argument("--mark", action="append", default=[], help="NAME=BITS: a model's bits per base, drawn beside")
    args = parser.parse_args()
    shards = args.shards
    if shards is None:
        from dna import fetch_data  # benchmarks/dna.py, beside this file

        data = fetch_data(args.data_dir)
        if args.task == "species":
            source = ",".join(f"{name}={files}" for name, files in data["species"].items())
        else:
            source = data["promoters"]
        shards = prepare_dna_shards(source, str(args.data_dir / "cache"), 0.05, "split", "")
    train, val = read_split(shards, "train"), read_split(shards, "val")
    labelled = any(label >= 0 for _, label in train)
    rows = []
    for left, right in CONTEXTS:
        for by_label in [False, True] if labelled and (left, right) == (0, 0) else [False]:
            bits = context_bits(train, val, left, right, by_label)
            rows.append({"left": left, "right": right, "by_label": by_label, "bits_per_base": bits})
    result = {"benchmark": "dna_floors", "shards": str(shards), "uniform_bits": math.log2(4), "rows": rows}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.png:
        plot(rows, dict(mark.rsplit("=", 1) for mark in args.mark), args.png)


def plot(rows: list[dict], marks: dict[str, str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def name(row: dict) -> str:
        if (row["left"], row["right"]) == (0, 0):
            return "composition" + (" per label" if row["by_label"] else "")
        if row["right"] == 0:
            return f"Markov, {row['left']} left"
        return f"both sides, +-{row['left']}"

    figure, axis = plt.subplots(figsize=(8, 0.35 * (len(rows) + len(marks)) + 1.2))
    names = [name(r) for r in rows] + list(marks)
    bits = [r["bits_per_base"] for r in rows] + [float(v) for v in marks.values()]
    axis.barh(range(len(names)), bits, color=["tab:grey"] * len(rows) + ["tab:blue"] * len(marks))
    for i, value in enumerate(bits):
        axis.text(value, i, f" {value:.3f}", va="center", fontsize=8)
    axis.set_yticks(range(len(names)), names, fontsize=8)
    axis.invert_yaxis()
    axis.set(xlim=(min(bits) - 0.03, 2.01), xlabel="validation bits per base (2 = uniform)")
    axis.set_title("context models counted on the training split (grey), trained models (blue)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
