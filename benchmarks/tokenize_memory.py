"""Peak memory and time of tokenising a large corpus into shards: a 100 MB corpus of ordinary lines, and a single
200 MB line. Each runs in its own process, whose peak resident memory is read from the kernel.

    python benchmarks/tokenize_memory.py            # JSON with seconds and peak MB per case
"""

from __future__ import annotations

import argparse
import json
import lzma
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import resource, sys
from scorediff.data import ByteTokenizer
from scorediff.data.prepare import prepare_shards
prepare_shards(sys.argv[1], ByteTokenizer(), sys.argv[2])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def make_corpus(path: Path, megabytes: int, one_line: bool) -> Path:
    from scorediff.data.sources import EMBEDDED

    with lzma.open(EMBEDDED["shakespeare"], "rt", encoding="utf-8") as handle:
        text = handle.read()
    if one_line:
        text = text.replace("\n", " ")
    with open(path, "w", encoding="utf-8") as out:
        written = 0
        while written < megabytes * 2**20:
            out.write(text)
            written += len(text)
    return path


def measure(corpus: Path, cache: Path) -> dict:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, str(corpus), str(cache)], check=True, capture_output=True)
    peak = int(done.stdout.split()[-1]) / 1024  # the child's own peak, kB -> MB (Linux)
    return {"megabytes": corpus.stat().st_size / 2**20, "seconds": time.perf_counter() - start, "peak_rss_mb": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines-mb", type=int, default=100)
    parser.add_argument("--line-mb", type=int, default=200)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        lines = make_corpus(root / "lines.txt", args.lines_mb, one_line=False)
        results["corpus_of_lines"] = measure(lines, root / "cache-a")
        lines.unlink()
        line = make_corpus(root / "line.txt", args.line_mb, one_line=True)
        results["one_line"] = measure(line, root / "cache-b")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
