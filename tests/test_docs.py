"""Every Python block of the README and the docs runs (each in its own process, from an empty folder), and the
docs' internal links point at pages that exist. A block that cannot run here is fenced as ``python notest`` and
says why in the text around it."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```python([^\n]*)\n(.*?)^```", re.S | re.M)


def blocks() -> list[tuple[str, str, bool]]:
    found = []
    for page in PAGES:
        for number, match in enumerate(FENCE.finditer(page.read_text()), start=1):
            found.append((f"{page.relative_to(ROOT)}#{number}", match.group(2), "notest" in match.group(1)))
    return found


@pytest.mark.parametrize("name, code, skip", blocks(), ids=[name for name, _, _ in blocks()])
def test_the_python_block_runs(name, code, skip, tmp_path):
    if skip:
        pytest.skip(f"{name} is marked notest (it needs what CI lacks, as its page says)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{name}:\n{done.stderr[-3000:]}"


def test_links_between_pages_resolve():
    link = re.compile(r"\]\(([^)#\s]+\.md)(#[^)]*)?\)")
    for page in PAGES:
        for target, _ in link.findall(page.read_text()):
            if target.startswith("http"):
                continue
            assert (page.parent / target).resolve().exists(), f"{page.relative_to(ROOT)} links to missing {target}"
