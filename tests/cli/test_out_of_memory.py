"""A command that runs out of memory ends in one line that says what to lower, and a new run that failed before its
first checkpoint leaves no run directory behind."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from cli_run import run_cli

from scorediff.checkpoint import list_checkpoints
from scorediff.cli import out_of_memory
from scorediff.commands import train_cmd
from scorediff.training import trainer

# The child measures its address space once scorediff is imported and allows 2 GiB more: a micro model trains in
# far less, and one activation of the largest batch allowed, 2**20 windows of 32 tokens 256 wide in float32, is 32 GiB.
# The allocation fails in malloc, for real, without the machine's memory being used.
LIMITED_TRAIN = """
import resource, sys
from scorediff.cli import main
size = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize:"))
limit = size + 2 * 2**30
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc/self/status are Linux's")
def test_train_out_of_cpu_memory_is_one_line_and_leaves_no_run_directory(micro_yaml, tmp_path):
    out = tmp_path / "runs"
    argv = ["train", "--config", str(micro_yaml), "--out", str(out)] + (
        "--name big --device cpu --quiet --num-samples 0 --train.compile=false --train.batch_size=1048576 "
        "--model.hidden_size=256"
    ).split()
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    done = subprocess.run([sys.executable, "-c", LIMITED_TRAIN, *argv], capture_output=True, text=True, env=env)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("scorediff: error: out of CPU memory (an allocation of "), lines[0]
    assert lines[0].endswith(" GiB failed); lower train.batch_size (or raise train.grad_accum) or model.seq_len")
    assert "run directory: " in done.stdout  # it had been written, with its config and tokenizer, before the step
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("case", ["saved", "stepped", "unlogged", "existing"])
def test_a_run_that_logged_or_a_folder_that_was_there_is_kept(micro_yaml, tmp_path, monkeypatch, capsys, case):
    """Out of memory at step 4 after the checkpoint of step 3; at step 3, before any checkpoint (the metrics of
    step 2 stay); at step 2, before step 1 was logged (``log_every=2``: the folder goes); or at step 1 in a folder
    the user made."""
    run_dir = tmp_path / "runs" / "run"
    existing = case == "existing"
    if existing:
        run_dir.mkdir(parents=True)
        (run_dir / "notes.txt").write_text("mine")
    fail_at, steps = {"saved": 4, "stepped": 3, "unlogged": 2, "existing": 1}[case], []
    original = trainer.train_step

    def step_then_fail(state, batch):
        steps.append(1)
        if len(steps) == fail_at:
            torch.empty(1 << 50, dtype=torch.uint8)  # a petabyte: the CPU allocator refuses it at once
        return original(state, batch)

    monkeypatch.setattr(trainer, "train_step", step_then_fail)
    argv = ["train", "--config", str(micro_yaml), "--out", str(tmp_path / "runs"), "--name", "run", "--device", "cpu",
            "--quiet", "--num-samples", "0"]  # fmt: skip
    code, _, err = run_cli(capsys, argv)
    assert code == 2, err
    assert err == (
        "scorediff: error: out of CPU memory (an allocation of 1,048,576.00 GiB failed); "
        "lower train.batch_size (or raise train.grad_accum) or model.seq_len\n"
    )
    assert run_dir.exists() == (case != "unlogged")
    assert [path.name for path in list_checkpoints(run_dir)] == (["step_00000003"] if case == "saved" else [])
    assert existing == (run_dir / "notes.txt").is_file()
    metrics = run_dir / "metrics.jsonl"
    logged = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.is_file() else []
    assert (case == "stepped") <= any(record.get("step") == 2 for record in logged)


def test_the_message_names_what_ran_out_the_size_asked_and_what_to_lower():
    with pytest.raises(RuntimeError) as cpu:
        torch.empty(1 << 50, dtype=torch.uint8)  # a petabyte, more than any address space: refused at once
    assert out_of_memory(cpu.value, "train") == (
        "out of CPU memory (an allocation of 1,048,576.00 GiB failed); "
        "lower train.batch_size (or raise train.grad_accum) or model.seq_len"
    )
    with pytest.raises(MemoryError) as numpy:
        np.empty(1 << 40)  # 8 TiB of float64
    message = out_of_memory(numpy.value, "eval")
    assert message == "out of memory (an allocation of 8,192.00 GiB failed); lower --batch-size"
    gpu = torch.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 512.00 MiB. GPU 0 has a total capacity of 79.19 GiB of which 12.00 MiB "
        "is free. Including non-PyTorch memory, this process has 79.17 GiB memory in use."
    )  # torch's CUDA allocator, with sizes as c10's format_size writes them
    assert out_of_memory(gpu, "sample") == (
        "out of GPU memory (an allocation of 0.50 GiB failed); "
        "ask for fewer --num-samples, a smaller --batch-size or a shorter --length"
    )
    windows = RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1610612736 bytes.")
    assert out_of_memory(windows, "infill") == (
        "out of CPU memory (an allocation of 1.50 GiB failed); ask for fewer --num-samples or a shorter --length"
    )
    assert out_of_memory(MemoryError(), "demo") == "out of memory; ask for less at once"
    for cuda in ("CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported",
                 "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"):  # fmt: skip
        assert out_of_memory(RuntimeError(cuda), "eval") == "out of GPU memory; lower --batch-size"
    assert out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 5x6)"), "train") is None
    assert out_of_memory(ValueError("DefaultCPUAllocator: can't allocate memory"), "train") is None


def test_a_runtime_error_that_is_not_out_of_memory_still_propagates(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("Expected all tensors to be on the same device")

    monkeypatch.setattr(train_cmd, "run", broken)
    with pytest.raises(RuntimeError, match="same device"):
        run_cli(capsys, ["train"])
