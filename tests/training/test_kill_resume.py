"""SIGKILL anywhere, then resume: the reduced CI form of benchmarks/kill_resume.py (20 trials there)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))

from kill_resume import main  # noqa: E402


def test_killed_runs_end_as_the_uninterrupted_one(capsys):
    summary = main(["--trials", "2", "--seed", "1"])
    assert summary["passed"] == summary["trials"] == 2
    assert summary["kills"] >= 2  # each trial was killed at least once


def test_killed_sharded_runs_end_as_the_uninterrupted_one(capsys):
    """The same with 2 FSDP processes under torchrun, both killed at once: each resume reads sharded checkpoints
    (the whole weights of the last one are compared)."""
    summary = main(["--trials", "2", "--seed", "2", "--fsdp"])
    assert summary["passed"] == summary["trials"] == 2
    assert summary["resumes"] >= 1  # at least one kill came after a sharded checkpoint, and was resumed from it
