"""The tiny presets share one network shape, and the benchmarks' ``--shape`` rebuilds the published tables' one."""

import argparse
import sys
from pathlib import Path

import pytest

from scorediff.builders import build_model, build_objective
from scorediff.config import load_config

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from shapes import PUBLISHED, shape_overrides  # noqa: E402

SHAPE_FIELDS = ("hidden_size", "cond_dim", "n_blocks", "n_heads", "seq_len")


def _shape(config) -> tuple:
    return tuple(getattr(config.model, field) for field in SHAPE_FIELDS)


def _parameters(preset: str, overrides: list[str]) -> int:
    config = load_config(preset, overrides)
    return sum(p.numel() for p in build_model(config, build_objective(config, 84)).parameters())


def test_the_baselines_of_tiny_have_its_shape():
    assert _shape(load_config("tiny-ar")) == _shape(load_config("tiny"))
    assert _shape(load_config("tiny-block")) == _shape(load_config("tiny"))


@pytest.mark.parametrize("preset, published", [("tiny", 4_055_509), ("tiny-block", 4_055_509), ("tiny-ar", 3_196_757)])
def test_the_published_shape_gives_the_published_parameter_counts(preset, published):
    # the likelihood table (docs/benchmarks/likelihood.md) lists these counts for 84 characters at 256 x 4 x 4
    assert _parameters(preset, shape_overrides(PUBLISHED)) == published
    assert _parameters(preset, shape_overrides("preset")) == _parameters(preset, [])


@pytest.mark.parametrize("text", ["256x4", "256x4x0", "wide", "256x4x4x1", "-256x4x4"])
def test_a_malformed_shape_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="WIDTHxBLOCKSxHEADS"):
        shape_overrides(text)
