"""Runs that survive preemption, non-finite steps and a second writer, and leave nothing half-done behind."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from scorediff.config import ConfigError
from scorediff.fileio import DirectoryLock, LockHeld
from scorediff.training import train
from scorediff.training.step import TrainingDiverged


def losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss_nats_per_token"] for r in records if "loss_nats_per_token" in r}


def with_train(config, **fields):
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **fields))


def start_cli(path, name, cwd, *extra):
    command = [sys.executable, "-m", "scorediff", "train", "--config", str(path), "--name", name, "--quiet"]
    command += ["--num-samples", "0", "--train.bf16=false", *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_step(run_dir, step, process, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.communicate())
        metrics = run_dir / "metrics.jsonl"
        if metrics.exists() and any(s >= step for s in losses_safe(metrics)):
            return
        time.sleep(0.05)
    raise AssertionError(f"no step {step} within {timeout} s")


def losses_safe(metrics):
    steps = []
    for line in metrics.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except (json.JSONDecodeError, KeyError):
            pass
    return steps


@pytest.mark.parametrize("name, code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_saves_the_current_step_and_resume_continues_exactly(micro_config, tmp_path, name, code):
    config, path = micro_config(max_steps=400, save_every=50, log_every=1, eval_every=0)
    process = start_cli(path, "cut", tmp_path)
    run_dir = tmp_path / "runs" / "cut"
    wait_for_step(run_dir, 60, process)
    process.send_signal(getattr(signal, name))
    out, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    assert "Traceback" not in err
    stopped = int(out.split(f"stopped by {name} at step ")[1].split(";")[0])
    assert stopped >= 60 and (run_dir / "checkpoints" / f"step_{stopped:08d}").is_dir()  # not only the 50s
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))

    config = with_train(config, bf16=False)  # as the command line ran it
    resumed = train(with_train(config, run_name="cut"), resume=True, until_step=stopped + 4, progress=False)
    straight = train(with_train(config, run_name="straight"), until_step=stopped + 4, progress=False)
    cut_losses, straight_losses = losses(resumed.run_dir), losses(straight.run_dir)
    for step in range(stopped + 1, stopped + 5):
        assert cut_losses[step] == straight_losses[step]
    assert sorted(cut_losses) == list(range(1, stopped + 5))  # each step logged once, none repeated


def test_a_non_finite_gradient_is_skipped_not_applied(micro_config, monkeypatch):
    config, _ = micro_config(max_steps=6, save_every=0, max_skipped_steps=3)
    original, calls = torch.nn.utils.clip_grad_norm_, []

    def nan_at_step_3(parameters, max_norm):  # an injected NaN in the third step's gradient
        calls.append(1)
        norm = original(parameters, max_norm)
        return torch.tensor(float("nan")) if len(calls) == 3 else norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", nan_at_step_3)
    result = train(config, progress=False)
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped_steps"] for r in records if "skipped_steps" in r] == [0, 0, 1, 1, 1, 1]
    assert result.step == 6
    weights = load_file(result.checkpoint / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_an_absurd_learning_rate_stops_with_the_step_and_saves_nothing_non_finite(micro_config, tmp_path):
    config, _ = micro_config(max_steps=50, save_every=1, max_skipped_steps=3)
    config = dataclasses.replace(config, optim=dataclasses.replace(config.optim, lr=1e30, warmup_steps=0))
    with pytest.raises(TrainingDiverged, match=r"at step \d+: .*(not finite at 3 steps in a row|weights)|non-finite"):
        train(config, progress=False)
    for checkpoint in sorted((tmp_path / "runs" / "run" / "checkpoints").glob("step_*")):
        for name in ("model.safetensors", "ema.safetensors"):
            assert all(torch.isfinite(w).all() for w in load_file(checkpoint / name).values())


def test_one_run_one_writer_and_a_killed_holder_does_not_keep_the_lock(micro_config, tmp_path):
    config, _ = micro_config(max_steps=3)
    run_dir = tmp_path / "runs" / "run"
    held = DirectoryLock(run_dir).acquire()
    try:
        with pytest.raises(ConfigError, match=r"another `scorediff train` \(pid \d+\) is writing into"):
            train(config, progress=False)
    finally:
        held.release()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from scorediff.fileio import DirectoryLock; lock = DirectoryLock({str(run_dir)!r})"
         ".acquire(); import time; print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(LockHeld):
        DirectoryLock(run_dir).acquire()
    holder.kill()
    holder.wait()
    DirectoryLock(run_dir).acquire().release()  # the kernel released it with the process
    assert train(config, progress=False).step == 3


def test_resume_from_anywhere_and_past_what_a_kill_left(micro_config, tmp_path, monkeypatch):
    config, _ = micro_config(max_steps=9, save_every=3)
    first = train(config, until_step=6, progress=False)
    run_dir = first.run_dir
    (run_dir / "checkpoints" / ".tmp-abc").mkdir()  # a save killed half-way
    with open(run_dir / "metrics.jsonl", "a") as metrics:  # steps a killed run logged after its last checkpoint
        metrics.write(json.dumps({"step": 7, "loss_nats_per_token": 1.0}) + "\n" + '{"step": 8, "lo')
    newest = run_dir / "checkpoints" / "step_00000006" / "ema.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])  # truncated: resume from step 3 instead
    monkeypatch.chdir(tmp_path / "runs")
    absolute = with_train(config, out_dir=str(tmp_path / "runs"))
    relative = with_train(config, out_dir=".")
    assert train(relative, resume=True, until_step=7, progress=False).step == 7
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))
    assert sorted(losses(run_dir)) == list(range(1, 8))
    assert train(absolute, resume=True, progress=False).step == 9
    copied = tmp_path / "elsewhere" / "renamed"
    __import__("shutil").copytree(run_dir, copied)
    moved = with_train(config, out_dir=str(copied.parent), run_name="renamed", max_steps=12)
    assert train(moved, resume=True, progress=False).step == 12


def test_a_new_run_over_a_run_killed_before_its_first_checkpoint_starts_clean(micro_config, tmp_path):
    config, _ = micro_config(max_steps=3)
    run_dir = tmp_path / "runs" / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss_nats_per_token": 9.0}) + "\n")
    train(config, progress=False)
    assert losses(run_dir)[1] != 9.0 and sorted(losses(run_dir)) == [1, 2, 3]


@pytest.mark.parametrize("name", ["../../elsewhere", "a/b", "..", ".hidden", "-x"])
def test_a_run_name_is_one_folder(micro_config, name, tmp_path):
    config, _ = micro_config(max_steps=1)
    with pytest.raises(ConfigError, match=r"train.run_name must be one folder name"):
        train(with_train(config, run_name=name), progress=False)
    assert not (tmp_path / "elsewhere").exists()


def test_checkpoint_folders_follow_the_umask(micro_config):
    config, _ = micro_config(max_steps=1)
    previous = os.umask(0o022)
    try:
        result = train(config, progress=False)
    finally:
        os.umask(previous)
    assert result.checkpoint.stat().st_mode & 0o777 == 0o755
    assert (result.checkpoint / "config.json").stat().st_mode & 0o777 == 0o644
