"""``train --resume`` of a damaged run: what a hostile pass found (a segmentation fault, tracebacks, intact
checkpoints trained over). Each is one line and exit code 2 before anything is written, or a resume that works."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_run import assert_user_error, run_cli
from safetensors.torch import load_file, save_file


@pytest.fixture
def run(tmp_path, trained_run) -> Path:
    """A copy of the shared run (checkpoints at steps 3 and 6) to damage."""
    shutil.copytree(trained_run, tmp_path / "run")
    return tmp_path / "run"


def _resume(run: Path, *extra: str) -> list[str]:
    return ["train", "--resume", str(run), "--quiet", "--num-samples", "0", "--train.max_steps=9", *extra]


def _snapshot(run: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file() and p.name != ".lock"
    }


def _edit_tensors(path: Path, edit) -> None:
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path)


def _edit_json(path: Path, edit) -> None:
    values = json.loads(path.read_text())
    edit(values)
    path.write_text(json.dumps(values))


def _damages(last: Path) -> dict:
    """name -> (how the last checkpoint is damaged, the one line that refuses it)."""
    optimizer, trainer = last / "trainer_state.safetensors", last / "trainer_state.json"
    return {
        # moments of another shape ran AdamW's kernel past them: a segmentation fault (exit 139)
        "moment shape": (lambda: _edit_tensors(optimizer, lambda t: t.update({"optimizer.0.exp_avg": torch.zeros(3)})),
                         r"optimizer.0.exp_avg must have shape \(\d+, \d+\); got shape \(3,\)"),
        "moment missing": (lambda: _edit_tensors(optimizer, lambda t: t.pop("optimizer.0.exp_avg_sq")),
                           r"optimizer.0.exp_avg_sq must have shape .*; got nothing"),  # a KeyError
        "groups": (lambda: _edit_json(trainer, lambda v: v["optimizer"]["param_groups"].pop()),
                   r"its optimizer's parameter groups are not this run's"),  # a ValueError
        "weights": (lambda: _edit_tensors(last / "model.safetensors", lambda t: t.update({"extra": torch.zeros(2)})),
                    r"the weights in .*model.safetensors do not match this run's network"),  # a RuntimeError
        "ema": (lambda: _edit_tensors(last / "ema.safetensors", lambda t: t.pop(next(iter(t)))),
                r"the weights in .*ema.safetensors do not match this run's network"),  # a KeyError
        "step": (lambda: _edit_json(trainer, lambda v: v.update(step=-4)),
                 r"trainer_state.json: step must be 6; got -4"),  # trained over the intact step 3 from step -4
    }  # fmt: skip


@pytest.mark.parametrize("damage", ["moment shape", "moment missing", "groups", "weights", "ema", "step"])
def test_a_damaged_checkpoint_is_refused_before_anything_is_written(capsys, run, damage):
    last = sorted((run / "checkpoints").iterdir())[-1]
    spoil, expected = _damages(last)[damage]
    spoil()
    before = _snapshot(run)
    assert_user_error(capsys, _resume(run), expected)
    assert _snapshot(run) == before


def test_a_resume_to_fewer_steps_than_trained_is_refused(capsys, run):
    """It said "finished step 6" and recorded max_steps 4 in the run's config.json."""
    before = _snapshot(run)
    argv = _resume(run, "--train.max_steps=4")
    assert_user_error(capsys, argv, r"cannot resume .* to train.max_steps=4: step_00000006 is past it")
    assert _snapshot(run) == before


@pytest.mark.parametrize("garbage", [b"\xff\xfe\x80 not text\n", b'{"step": "x"}\n', b"[1, 2]\n"])
def test_garbage_in_the_metrics_is_dropped_not_a_traceback(capsys, run, garbage):
    """Undecodable bytes escaped as a UnicodeDecodeError, a step that is text as a TypeError."""
    metrics = run / "metrics.jsonl"
    records = metrics.read_bytes().splitlines(keepends=True)
    metrics.write_bytes(b"".join(records[:2]) + garbage + b"".join(records[2:]))
    code, _, err = run_cli(capsys, _resume(run))
    assert code == 0, err
    steps = [json.loads(line).get("step") for line in metrics.read_text().splitlines()]
    assert all(isinstance(step, int) for step in steps) and max(steps) == 9


def test_the_fallback_note_is_said_once_on_stderr(capsys, run):
    last = sorted((run / "checkpoints").iterdir())[-1]
    (last / "model.safetensors").write_bytes(b"cut")
    code, out, err = run_cli(capsys, _resume(run))
    assert code == 0, err
    note = "note: step_00000006 is incomplete or corrupt; resuming from step_00000003"
    assert err.count(note) == 1 and note not in out


def _resume_unprivileged(run: Path, path: Path, mode: int) -> subprocess.CompletedProcess:
    """Resume ``run`` with ``path`` set to ``mode`` (restored after), in a process that may not read or write past
    files' modes (root drops that right with setpriv)."""
    dropped = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    if dropped and not shutil.which("setpriv"):
        pytest.skip("root without setpriv reads and writes whatever the modes")
    kept = path.stat().st_mode
    path.chmod(mode)
    try:
        argv = [*dropped, sys.executable, "-m", "scorediff", *_resume(run)]
        return subprocess.run(argv, capture_output=True, text=True)
    finally:
        path.chmod(kept)


def test_an_unreadable_checkpoint_is_refused_not_trained_over(run):
    """An intact checkpoint the user may not read was called corrupt, passed over and overwritten (exit 0)."""
    weights = sorted((run / "checkpoints").iterdir())[-1] / "model.safetensors"
    before = weights.read_bytes()
    done = _resume_unprivileged(run, weights, 0o200)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith("model.safetensors cannot be read (permission denied)")
    assert weights.read_bytes() == before


def test_a_run_whose_checkpoints_cannot_be_written_is_refused_before_training(run):
    """The error came at the first save, after steps 7-9 had been logged and config.json rewritten."""
    before = _snapshot(run)
    checkpoints = run / "checkpoints"
    done = _resume_unprivileged(run, checkpoints, 0o555)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last == f"scorediff: error: cannot write into {checkpoints}: permission denied"
    assert _snapshot(run) == before
