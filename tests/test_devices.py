"""The CPU allocator setting: with it, memory freed by one training step is reused by the next without page faults."""

import platform
import subprocess
import sys

import pytest

# 20 rounds of three touched 8 MiB tensors allocated and freed: the page faults counted over the rounds
ROUNDS = """
import resource, sys, torch
from scorediff.devices import keep_freed_memory
if sys.argv[1] == "keep" and not keep_freed_memory():
    raise SystemExit("not applied")
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(2):  # glibc adapts its thresholds to the first frees
    xs = [torch.ones(2 << 20) for _ in range(3)]
    del xs
start = faults()
for _ in range(20):
    xs = [torch.ones(2 << 20) for _ in range(3)]
    del xs
print(faults() - start)
"""

PAGES_PER_ROUND = 3 * (8 << 20) // 4096


def page_faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, check=True)
    return int(done.stdout.strip())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_memory_is_reused_without_page_faults():
    # glibc's defaults map these blocks afresh or trim them away, so the rounds fault on most pages again
    assert page_faults("default") > 5 * PAGES_PER_ROUND
    # kept, the heap serves the rounds from pages touched before: less than one round's worth in all 20
    assert page_faults("keep") < PAGES_PER_ROUND
