"""Every script in examples/ runs in its reduced form (--quick) and prints what it promises."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[1] / "examples"
EXPECTED = {
    "train_and_infill.py": [r"filled in: To be, or .* the question", r"bound: \d+\.\d+ bits per character"],
    "prompted_task.py": [r"random order: \d+ of 100 held-out graphs solved", r"confidence order: \d+ of 100"],
    "dna_guidance.py": [r"ecoli, guidance 3\.0: GC content 0\.\d+", r"saureus, guidance 0\.0"],
    "load_published.py": [r"the RADD layout, diffusion", r"bound on -log p: \[\d"],
}


def test_every_example_is_listed():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_example_runs_quickly(name, tmp_path):
    extra = ["--out", str(tmp_path)] if name in ("train_and_infill.py", "dna_guidance.py") else []
    done = subprocess.run([sys.executable, str(EXAMPLES / name), "--quick", *extra], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    for pattern in EXPECTED[name]:
        assert re.search(pattern, done.stdout, re.S), (pattern, done.stdout[-2000:])
