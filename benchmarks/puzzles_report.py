"""The puzzle benchmark's report (``benchmarks/puzzles.py``): each decoder's rows summarised over seeds, the PNG,
and ``--merge`` of results run apart."""

from __future__ import annotations

import json
import statistics
from pathlib import Path


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and spread over seeds of each (model, split, decoder)."""
    keys = sorted({(r["model"], r["split"], r["decoder"]) for r in rows})
    out = []
    for model, split, decoder in keys:
        picked = [r for r in rows if (r["model"], r["split"], r["decoder"]) == (model, split, decoder)]
        rates = [r["solve_rate"] for r in picked]
        out.append({
            "model": model, "split": split, "decoder": decoder, "seeds": len(picked),
            "solve_rate": statistics.mean(rates), "solve_rate_min": min(rates), "solve_rate_max": max(rates),
            "cell_accuracy": statistics.mean(r["cell_accuracy"] for r in picked),
            "seconds_per_puzzle": statistics.mean(r["seconds_per_puzzle"] for r in picked),
            "puzzles": picked[0]["puzzles"],
            "network_calls": statistics.mean(r["network_calls"] for r in picked),
        })  # fmt: skip
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    colours = {"diffusion": "tab:blue", "ar": "tab:red"}
    for run in results["runs"]:
        points = run["curve"]  # against steps: the same compute for both models (wall times are in the JSON)
        label = f"{run['model']} seed {run['seed']}"
        left.plot([p["step"] for p in points], [100 * p["solve_rate"] for p in points], "o-",
                  color=colours[run["model"]], alpha=0.7, label=label)  # fmt: skip
    left.set_xlabel(f"training steps (batch {results['batch']}, the same for both models)")
    left.set_ylabel(f"solve rate on {results['curve_puzzles']} held-out puzzles (%)")
    left.set_title(f"{results['task']}: diffusion (confidence order) vs AR (greedy)")
    left.legend(fontsize=7)
    for entry in results["summary"]:
        if entry["split"] != "test":
            continue
        right.scatter(1000 * entry["seconds_per_puzzle"], 100 * entry["solve_rate"], color=colours[entry["model"]])
        right.annotate(entry["decoder"], (1000 * entry["seconds_per_puzzle"], 100 * entry["solve_rate"]), fontsize=7)
    right.set_xscale("log")
    right.set_xlabel("decoding time per puzzle (ms, batches of 250)")
    right.set_ylabel("solve rate (%), mean over seeds")
    right.set_title(f"{results['test_puzzles']} held-out puzzles: every decoder")
    for axes in (left, right):
        axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def merge(paths: list[Path], out: Path) -> None:
    """The runs and rows of several ``puzzles.json`` files (one task, other seeds) as one result, summarised."""
    parts = [json.loads(path.read_text()) for path in paths]
    if len({part["task"] for part in parts}) != 1:
        raise SystemExit("--merge takes results of one task")
    results = {**parts[0], "commands": [part["command"] for part in parts], "runs": [], "rows": []}
    for part in parts:
        results["runs"] += part["runs"]
        results["rows"] += part["rows"]
    keys = [(row["model"], row["seed"], row["split"], row["decoder"]) for row in results["rows"]]
    if len(set(keys)) != len(keys):  # a seed counted twice would pass for another seed in the spread
        raise SystemExit("--merge takes other seeds; a model's seed, split and decoder appear twice")
    results["summary"] = summarise(results["rows"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "puzzles.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out / "puzzles.png")
    for entry in results["summary"]:
        print(json.dumps(entry))
