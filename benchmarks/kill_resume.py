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


def launch(args: list[str]) -> subprocess.Popen:
    """The run's process, in a session of its own (the kill reaches torchrun's workers too); its stderr goes to a
    file, which a pipe nobody reads while the run is watched could fill and block."""
    errors = tempfile.TemporaryFile("w+")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True)
    process.errors = errors
    return process


def finish(process: subprocess.Popen) -> None:
    """Wait for the run's end; its stderr as the error when it failed."""
    process.wait()
    process.errors.seek(0)
    if process.returncode:
        raise RuntimeError(process.errors.read())
    process.errors.close()


def run(args: list[str], metrics: Path) -> tuple[float, float]:
    """Run to the end; the seconds from launch to the start of training, and from there to its end."""
    start = time.perf_counter()
    process = launch(args)
    _wait_for_training(process, metrics, None)
    first = time.perf_counter()
    finish(process)
    return first - start, time.perf_counter() - first


def run_and_kill(args: list[str], metrics: Path, kill: tuple[str, float] | None) -> int:
    """Run, killed ``kill[1]`` seconds after its launch (``"start"``) or after it starts training (``"training"``);
    its exit code, or -9 when killed."""
    before = _signature(metrics)
    process = launch(args)
    if kill is not None:
        phase, delay = kill
        if phase == "start" or _wait_for_training(process, metrics, before):
            try:
                process.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # no handler runs, a checkpoint write may be cut anywhere
                _kill_workers_of(args)
                process.wait()
                process.errors.close()
                return -9
    finish(process)
    return 0


def _kill_workers_of(args: list[str]) -> None:
    """SIGKILL torchrun's workers too: each runs in a session of its own, which the kill of the launcher's group
    does not reach (left, they trained on beside the resumed run). Found by their command line (Linux's /proc)."""
    run_dir = args[args.index("--resume") + 1] if "--resume" in args else args[args.index("--out") + 1]
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
            if b"scorediff" in words and any(run_dir.encode() in word for word in words):
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
        except (OSError, ValueError):  # gone meanwhile
            continue


def _wait_for_training(process: subprocess.Popen, metrics: Path, before: tuple | None) -> bool:
    """Whether the run started training before its process ended: its metrics file changed from ``before`` (a new
    run opens it, a resumed one rewrites it without the steps it runs again, then each step appends)."""
    while process.poll() is None:
        if _signature(metrics) != before:
            return True
        time.sleep(0.01)
    return False


def _signature(path: Path) -> tuple | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


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
#: The share of kills drawn in a run's start-up (imports, process group, data, model), before it starts training;
#: the others come while it trains, timed from that moment, so that a slow start on a busy machine (or the
#: reference's, which also cuts the data into shards) does not make a kill drawn from a whole run land after its end.
START_KILLS = 0.2


def draw_kill(rng: random.Random, startup: float, training: float) -> tuple[str, float]:
    """When to kill the next run: in its start-up, or while it trains (checkpoint writes included)."""
    if rng.random() < START_KILLS:
        return "start", rng.uniform(0.3, startup)
    return "training", rng.uniform(0.0, 0.9 * training)


def trial(root: Path, config: Path, reference: Path, rng: random.Random, timing: tuple, fsdp: bool = False) -> dict:
    name = "killed"
    kills = resumes = 0
    resume = False
    while True:
        kill = draw_kill(rng, *timing) if kills < MAX_KILLS else None
        if run_and_kill(command(config, root, name, resume, fsdp), root / name / "metrics.jsonl", kill) == 0:
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
        reference = root / "reference" / "run"
        timing = run(command(config, root / "reference", "run", False, args.fsdp), reference / "metrics.jsonl")
        results = []
        for index in range(args.trials):
            out = root / f"trial{index}"
            result = trial(out, config, reference, rng, timing, args.fsdp)
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
