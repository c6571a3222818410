"""Where diffusion beats autoregression: Sudoku and path-star graphs, prompt -> answer, same shape, steps and batch.

A diffusion model (absorbing, time-independent: the ``tiny`` preset) and an autoregressive one (``tiny-ar``) train
through the library's trainer on the same examples (``tokens`` / ``given`` JSONL: the prompt is given, only the
answer is learnt), for the same steps and batch, with several seeds. Each is then asked to solve held-out
puzzles with every decoder: for diffusion the random order (its exact samplers at several step counts, and the
first-hitting sampler) and the orders it chooses itself (confidence, margin; one or more cells per network call,
or a confidence threshold; refilling the least sure cells); for AR greedy left-to-right decoding. A checker
accepts any valid answer. Reports the solve rate, the cell accuracy (unknown positions equal to the reference)
and the decoding time per puzzle; the solve rate during training from the saved checkpoints. Writes JSON and a PNG.

    python benchmarks/puzzles.py --task sudoku6                # 3 seeds x 2 models x 1,200 steps of 128: 9-25 min
                                                               # a model here, as fast as the machine is that day
    python benchmarks/puzzles.py --task path_star --steps 4000 --batch 64 --seeds 0 --curve-every 500
    python benchmarks/puzzles.py --merge A/puzzles.json B/puzzles.json --out DIR   # seeds run apart: one table
    python benchmarks/puzzles.py --task sudoku6 --quick        # a smoke check in a few minutes
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
from puzzles_report import merge, plot, summarise

from scorediff.config import load_config
from scorediff.loading import load
from scorediff.sampling.options import SamplingOptions
from scorediff.tasks import path_star, sudoku
from scorediff.training import train

PRESETS = {"diffusion": "tiny", "ar": "tiny-ar"}
DIFFUSION_DECODERS = {
    "random-analytic-32": {"steps": 32, "predictor": "analytic"},
    "random-analytic-128": {"steps": 128, "predictor": "analytic"},
    "random-first-hitting": {"predictor": "first_hitting"},
    "confidence": {"order": "confidence", "tokens_per_step": 1},
    "margin": {"order": "margin", "tokens_per_step": 1},
    "confidence-k2": {"order": "confidence", "tokens_per_step": 2},
    "confidence-k3": {"order": "confidence", "tokens_per_step": 3},
    "confidence-k4": {"order": "confidence", "tokens_per_step": 4},
    "confidence-t0.99": {"order": "confidence", "tokens_per_step": 1, "threshold": 0.99},
    "confidence-t0.95": {"order": "confidence", "tokens_per_step": 1, "threshold": 0.95},
    "confidence-t0.9": {"order": "confidence", "tokens_per_step": 1, "threshold": 0.9},
    "confidence-t0.7": {"order": "confidence", "tokens_per_step": 1, "threshold": 0.7},
    # ReMDM-style: after the fill, 4 rounds each refill the 4 least sure cells seeing every other one
    "confidence-remask": {"order": "confidence", "tokens_per_step": 1, "remask_rounds": 4, "remask_tokens": 4},
}
#: the decoders also run on the fewer-givens split
HARDER_SPLIT_DECODERS = ("ar-greedy", "confidence", "margin", "confidence-remask")
#: board size -> (clues in training and test, clues of the fewer-givens split), inclusive ranges
GIVENS = {4: ((6, 8), (4, 5)), 6: ((12, 18), (8, 11)), 9: ((30, 36), (24, 29))}
AR_DECODERS = {"ar-greedy": {"greedy": True}}  # the likeliest token at each position


class Task:
    """Examples for training and the held-out splits, with a checker of answers."""

    def __init__(self, name: str, args):
        self.name = name
        if name.startswith("sudoku"):
            self.size = int(name.removeprefix("sudoku"))
            self.num_tokens, self.seq_len = sudoku.num_tokens(self.size), 2 * self.size * (self.size + 1)
            low, high = args.givens
            everything = sudoku.generate(self.size, args.train_examples + args.test, (low, high), args.data_seed)
            train_part, test = sudoku.split_by_grid(everything, args.test)
            hard = sudoku.generate(self.size, args.test, (args.hard_givens[0], args.hard_givens[1]), args.data_seed + 1)
            held = {p.solution for p in hard} | {p.solution for p in test}
            self.train = [p for p in train_part if p.solution not in held]
            rng = random.Random(args.data_seed + 2)  # symmetry augmentation: copies on grids no test puzzle has
            copies = [sudoku.transform(p, rng) for p in self.train for _ in range(args.augment)]
            self.train += [p for p in copies if p.solution not in held]
            self.splits = {"test": test, f"fewer-givens-{args.hard_givens[0]}-{args.hard_givens[1]}": hard}
        else:
            self.num_tokens, self.seq_len = path_star.num_tokens(), 45
            graphs = path_star.generate(args.train_examples + args.test, seed=args.data_seed)
            self.train, self.splits = graphs[: args.train_examples], {"test": graphs[args.train_examples :]}

    def record(self, item) -> dict:
        return sudoku.encode(item) if self.name.startswith("sudoku") else path_star.encode(item)

    def solved(self, item, row: list[int], given: list[bool]) -> bool:
        if self.name.startswith("sudoku"):  # the answer grid is the second half, clues and tags given in place
            return sudoku.is_solution(item, sudoku.decode_answer(self.size, row[len(row) // 2 :]))
        return path_star.is_path(item, [t for t, g in zip(row, given, strict=True) if not g])

    def write_train(self, path: Path) -> None:
        path.write_text("".join(json.dumps(self.record(item)) + "\n" for item in self.train))

    def tensors(self, items) -> tuple[torch.Tensor, torch.Tensor]:
        records = [self.record(item) for item in items]
        return torch.tensor([r["tokens"] for r in records]), torch.tensor([r["given"] for r in records])


def train_model(kind: str, seed: int, task: Task, data: Path, args, out: Path) -> dict:
    overrides = [
        f"data.source={data}", f"data.num_tokens={task.num_tokens}", f"model.seq_len={task.seq_len}",
        f"train.batch_size={args.batch}", f"train.max_steps={args.steps}", "train.time_budget_minutes=0",
        "train.max_minutes=0", "train.eval_every=0", f"train.save_every={args.curve_every}", "train.keep_last=1000",
        "train.preview_samples=0", "train.eval_windows=32", f"train.seed={seed}", f"train.out_dir={out}",
        f"train.run_name={kind}-seed{seed}", f"optim.lr={args.lr}", f"optim.warmup_steps={args.warmup}",
    ]  # fmt: skip
    run_dir = out / f"{kind}-seed{seed}"
    if args.reuse and (run_dir / "checkpoints" / f"step_{args.steps:08d}").is_dir():  # trained before: score it again
        metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
        seconds = max((m["elapsed_seconds"] for m in metrics if "elapsed_seconds" in m), default=None)
        return {"run_dir": run_dir, "train_seconds": seconds, "steps": args.steps, "reused": True}
    config = load_config(PRESETS[kind], overrides + args.override)
    start = time.perf_counter()
    result = train(config, progress=False)
    return {"run_dir": result.run_dir, "train_seconds": time.perf_counter() - start, "steps": result.step}


@torch.no_grad()
def solve(loaded, task: Task, items, options: dict, batch: int = 250) -> dict:
    """Solve rate, cell accuracy, seconds per puzzle and network calls of one decoder on ``items``."""
    tokens, given = task.tensors(items)
    generator = torch.Generator().manual_seed(0)
    solved, correct, cells, calls = 0, 0, 0, 0
    start = time.perf_counter()
    for first in range(0, len(items), batch):
        rows, known = tokens[first : first + batch], given[first : first + batch]
        drawn = loaded.objective.sample(
            loaded.model, tuple(rows.shape), SamplingOptions(**options), condition=(rows, known), generator=generator
        )
        out, calls = drawn.tokens, calls + drawn.stats.nfe
        for item, row, reference, mask in zip(items[first : first + batch], out, rows, known, strict=True):
            solved += task.solved(item, row.tolist(), mask.tolist())
            correct += int((row[~mask] == reference[~mask]).sum())
            cells += int((~mask).sum())
    seconds = time.perf_counter() - start
    return {"solve_rate": solved / len(items), "cell_accuracy": correct / cells,
            "seconds_per_puzzle": seconds / len(items), "network_calls": calls}  # fmt: skip


def curve(run_dir: Path, task: Task, kind: str, items) -> list[dict]:
    """The solve rate of each saved checkpoint (EMA weights) with the model's main decoder."""
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    elapsed = {m["step"]: m["elapsed_seconds"] for m in metrics if "elapsed_seconds" in m}
    options = AR_DECODERS["ar-greedy"] if kind == "ar" else DIFFUSION_DECODERS["confidence"]
    points = []
    for checkpoint in sorted((run_dir / "checkpoints").iterdir()):
        step = int(checkpoint.name.removeprefix("step_"))
        logged = max((s for s in elapsed if s <= step), default=None)
        result = solve(load(checkpoint), task, items, options)
        points.append({"step": step, "train_seconds": elapsed.get(logged), "solve_rate": result["solve_rate"]})
    return points


def evaluate(run: dict, kind: str, task: Task, args) -> list[dict]:
    loaded = load(run["run_dir"])
    rows = []
    for split, items in task.splits.items():
        decoders = AR_DECODERS if kind == "ar" else DIFFUSION_DECODERS
        if args.decoders:
            decoders = {k: v for k, v in decoders.items() if k in args.decoders}
        if split != "test":  # the harder split: each model's main decoders
            decoders = {k: v for k, v in decoders.items() if k in HARDER_SPLIT_DECODERS}
        for name, options in decoders.items():
            picked = items[: args.random_puzzles] if name.startswith("random") else items  # the slow, weak ones
            result = solve(loaded, task, picked, options)
            rows.append({"model": kind, "seed": run["seed"], "split": split, "decoder": name, "puzzles": len(picked),
                         **result})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["sudoku4", "sudoku6", "sudoku9", "path_star"], default="sudoku6")
    parser.add_argument("--models", nargs="*", choices=list(PRESETS), default=list(PRESETS))
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--train-examples", type=int, default=20000)
    parser.add_argument("--test", type=int, default=1000, help="held-out puzzles per split")
    parser.add_argument("--givens", type=int, nargs=2, help="Sudoku: clues in training and test (default by size)")
    parser.add_argument("--augment", type=int, default=0, help="Sudoku: symmetric copies of each training puzzle")
    parser.add_argument("--hard-givens", type=int, nargs=2, help="Sudoku: the fewer-givens split (default by size)")
    parser.add_argument("--curve-every", type=int, default=200, help="steps between checkpoints on the curve")
    parser.add_argument("--curve-puzzles", type=int, default=100)
    parser.add_argument("--random-puzzles", type=int, default=200, help="held-out puzzles for random-order decoders")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--override", nargs="*", default=[], help="section.key=value for both models")
    parser.add_argument("--quick", action="store_true", help="a smoke check: 150 steps of 32, small splits")
    parser.add_argument("--reuse", action="store_true", help="score the finished runs already in --out again")
    parser.add_argument("--decoders", nargs="*", help="only these decoders (default: all)")
    parser.add_argument("--no-curve", action="store_true", help="skip the solve rate of the saved checkpoints")
    parser.add_argument("--out", type=Path, help="folder for runs, JSON and PNG (default runs/puzzles-<time>)")
    parser.add_argument("--merge", type=Path, nargs="*", help="puzzles.json files of other seeds: one table")
    args = parser.parse_args()
    if args.merge:
        return merge(args.merge, args.out or Path("."))
    size = int(args.task.removeprefix("sudoku")) if args.task.startswith("sudoku") else None
    args.givens = args.givens or GIVENS.get(size, (0, 0))[0]
    args.hard_givens = args.hard_givens or GIVENS.get(size, (0, 0))[1]
    if args.quick:
        args.steps, args.batch, args.train_examples, args.test, args.curve_every = 150, 32, 1000, 100, 50
        args.curve_puzzles, args.random_puzzles, args.seeds, args.warmup = 50, 50, args.seeds[:1], 20
    out = args.out or Path("runs") / f"puzzles-{args.task}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    task = Task(args.task, args)
    data = out / "train.jsonl"
    task.write_train(data)
    print(f"{args.task}: {len(task.train)} training examples, {time.perf_counter() - started:.0f} s", flush=True)
    results = {
        "benchmark": "puzzles", "task": args.task, "command": " ".join(["python", *sys.argv]),
        "date": datetime.now().isoformat(timespec="seconds"), "machine": platform.processor() or platform.machine(),
        "cores": torch.get_num_threads(), "torch": torch.__version__, "steps": args.steps, "batch": args.batch,
        "lr": args.lr, "train_examples": len(task.train), "test_puzzles": args.test,
        "curve_puzzles": args.curve_puzzles, "runs": [], "rows": [],
    }  # fmt: skip
    for seed in args.seeds:
        for kind in args.models:
            run = {**train_model(kind, seed, task, data, args, out), "seed": seed, "model": kind}
            run["curve"] = (
                [] if args.no_curve else curve(run["run_dir"], task, kind, task.splits["test"][: args.curve_puzzles])
            )
            results["rows"] += evaluate(run, kind, task, args)
            run["run_dir"] = str(run["run_dir"])
            results["runs"].append(run)
            results["summary"] = summarise(results["rows"])
            (out / "puzzles.json").write_text(json.dumps(results, indent=2) + "\n")  # partial results as they come
            print(json.dumps({k: run[k] for k in ("model", "seed", "train_seconds", "curve")}), flush=True)
    plot(results, out / "puzzles.png")
    for entry in results["summary"]:
        print(json.dumps(entry))
    print(f"wrote {out / 'puzzles.json'} and {out / 'puzzles.png'} in {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
