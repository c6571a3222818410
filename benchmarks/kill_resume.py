"""Kill a training run with SIGKILL at random moments (checkpoint writes included), resume it each time, and
check that it ends where an uninterrupted run with the same seed ends: the same per-step losses, the same
weights, and never a half-written checkpoint a loader could pick up.

    python benchmarks/kill_resume.py --trials 20          # prints one JSON line per trial and a summary
    python benchmarks/kill_resume.py --trials 5 --fsdp    # 2 processes under torchrun, sharded checkpoints

Every process of a run is killed at once (its process group), as a lost node or a scheduler's kill would.
``tests/training/test_kill_resume.py`` runs it with two trials in CI, and one of an FSDP run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

MICRO = {
    "model": {"hidden_size": 32, "cond_dim": 16, "n_blocks": 1, "n_heads": 2, "seq_len": 32},
    "optim": {"lr": 3e-3, "warmup_steps": 2},
    "train": {"batch_size": 8, "max_steps": 60, "log_every": 1, "eval_every": 0, "save_every": 4,
              "eval_windows": 4, "eval_num_t": 2, "preview_samples": 0, "device": "cpu", "bf16": False,
              "keep_last": 2},
}  # fmt: skip


def command(config: Path, out: Path, name: str, resume: bool, fsdp: bool = False) -> list[str]:
    """The run's command line: one process, or 2 FSDP processes under torchrun on a free local port."""
    launcher = [sys.executable]
    if fsdp:
        launcher += ["-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1"]
        launcher += [f"--master_port={_free_port()}"]
    base = [*launcher, "-m", "scorediff", "train", "--quiet", "--num-samples", "0"]
    if resume:  # the saved configuration says fsdp
        return [*base, "--resume", str(out / name)]
    return [*base, "--config", str(config), "--out", str(out), "--name", name, *(["--train.parallel=fsdp"] * fsdp)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: list[str], kill_after: float | None = None) -> int:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen(  # a session of its own: the kill reaches torchrun's workers too
        args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    if kill_after is None:
        _, err = process.communicate()
        if process.returncode:
            raise RuntimeError(err)
        return 0
    try:
        process.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # no handler runs, a checkpoint write may be cut anywhere
        process.wait()
        return -9
    return process.returncode


def losses(run_dir: Path) -> dict[int, float]:
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "loss_nats_per_token" in record:
            out[record["step"]] = record["loss_nats_per_token"]
    return out


def weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    newest = sorted((run_dir / "checkpoints").glob("step_*"))[-1]
    return {name: load_file(newest / name) for name in ("model.safetensors", "ema.safetensors")}


def same_weights(a: dict, b: dict) -> bool:
    import torch

    return all(torch.equal(a[f][k], b[f][k]) for f in a for k in a[f])


#: Kills per trial after which the run is left to finish.
MAX_KILLS = 5


def trial(root: Path, config: Path, reference: Path, rng: random.Random, seconds: float, fsdp: bool = False) -> dict:
    name = "killed"
    kills = resumes = 0
    resume = False
    while True:
        # a run's start-up alone can take most of `seconds`: after MAX_KILLS the last run may finish, so a trial ends
        kill_after = rng.uniform(0.3, seconds) if kills < MAX_KILLS else None
        started = run(command(config, root, name, resume, fsdp), kill_after=kill_after)
        if started == 0:
            break
        kills += 1
        # killed before its first checkpoint: a new run over what it left; else a resume
        resume = any((root / name / "checkpoints").glob("step_*"))
        resumes += resume
    debris = sorted(str(p) for p in (root / name / "checkpoints").glob(".tmp-*"))
    result = {
        "kills": kills,
        "resumes": resumes,
        "losses_equal": losses(root / name) == losses(reference),
        "weights_equal": same_weights(weights(root / name), weights(reference)),
        "debris": debris,
    }
    result["passed"] = result["losses_equal"] and result["weights_equal"] and not debris
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", type=Path, help="a text file (default: the head of the embedded corpus)")
    parser.add_argument(
        "--fsdp", action="store_true", help="2 processes with train.parallel=fsdp (sharded checkpoints)"
    )
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = args.corpus or _corpus_head(root / "corpus.txt")
        values = dict(MICRO, data={"source": str(corpus), "tokenizer": "char", "cache_dir": str(root / "cache")})
        config = root / "micro.yaml"
        config.write_text(yaml.safe_dump(values))
        start = time.perf_counter()
        run(command(config, root / "reference", "run", False, args.fsdp))
        seconds = time.perf_counter() - start  # kill anywhere in a run's length
        results = []
        for index in range(args.trials):
            out = root / f"trial{index}"
            result = trial(out, config, root / "reference" / "run", rng, seconds, args.fsdp)
            results.append(result)
            print(json.dumps({"trial": index, **result}), flush=True)
    passed, kills = sum(r["passed"] for r in results), sum(r["kills"] for r in results)
    summary = {"trials": len(results), "passed": passed, "kills": kills, "resumes": sum(r["resumes"] for r in results)}
    print(json.dumps(summary))
    return summary


def _corpus_head(path: Path) -> Path:
    import lzma

    from scorediff.data.sources import EMBEDDED

    with lzma.open(EMBEDDED["shakespeare"], "rt", encoding="utf-8") as handle:
        path.write_text(handle.read(200_000))
    return path


if __name__ == "__main__":
    main()
