"""The distributed tests' launcher: a command that hangs fails the test in time and leaves no process behind."""

import sys
import time
from pathlib import Path

import pytest
from launch import launch

HANGS = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # a rank that hangs
print(child.pid, flush=True)
time.sleep(120)
"""


def test_a_hung_command_and_its_children_are_killed_at_the_timeout(tmp_path):
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"ran past 2 s") as failure:
        launch([sys.executable, "-c", HANGS], tmp_path, timeout=2)
    assert time.monotonic() - started < 60  # communicate() once waited for the pipes a surviving child held
    child = int(str(failure.value).split("ran past 2 s\n", 1)[1].split()[0])  # the pid it printed
    time.sleep(0.5)
    assert _state(child) in ("gone", "Z")  # killed (a zombie until whoever adopted it reaps it)


def _state(pid: int) -> str:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return "gone"
    return next(line.split()[1] for line in status.splitlines() if line.startswith("State:"))
