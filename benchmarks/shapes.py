"""The network shape the benchmarks' published tables were measured at, and ``--shape`` to measure another.

The quality, training-speed and sampling tables in docs/benchmarks/ were measured with the ``tiny`` presets at
256 x 4 x 4 (width x blocks x heads), the shape the issue's speed targets name and the original code is timed at.
The presets have since moved to a narrower, deeper network (more steps fit in the nine-minute budget);
``--shape 256x4x4``, the default, keeps those tables reproducible, ``--shape preset`` measures the presets as they are.
"""

from __future__ import annotations

import argparse

PUBLISHED = "256x4x4"


def shape_overrides(shape: str) -> list[str]:
    """``WIDTHxBLOCKSxHEADS`` as config overrides; ``preset`` keeps each preset's own shape."""
    if shape == "preset":
        return []
    parts = shape.split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected WIDTHxBLOCKSxHEADS such as 256x4x4, or 'preset'; got {shape!r}")
    width, blocks, heads = parts
    return [f"model.hidden_size={width}", f"model.n_blocks={blocks}", f"model.n_heads={heads}"]


def add_shape_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shape", type=shape_overrides, default=shape_overrides(PUBLISHED),
        help=f"WIDTHxBLOCKSxHEADS for every model, or 'preset' (default {PUBLISHED}: the published tables' shape)",
    )  # fmt: skip
