"""SIGKILL anywhere, then resume: the reduced CI form of benchmarks/kill_resume.py (20 trials there)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))

from kill_resume import main  # noqa: E402


def test_killed_runs_end_as_the_uninterrupted_one(capsys):
    summary = main(["--trials", "2", "--seed", "1"])
    assert summary["passed"] == summary["trials"] == 2
    assert summary["kills"] >= 2  # each trial was killed at least once
