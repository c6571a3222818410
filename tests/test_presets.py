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
    for preset in ("tiny-ar", "tiny-block", "tiny-llama", "tiny-llama-ar"):
        assert _shape(load_config(preset)) == _shape(load_config("tiny")), preset


@pytest.mark.parametrize("preset, arch", [("tiny", "dit"), ("tiny-ar", "dit"), ("tiny-llama", "llama"),
                                          ("tiny-llama-ar", "llama")])  # fmt: skip
def test_the_llama_presets_are_their_dit_twins_but_for_the_backbone(preset, arch):
    config = load_config(preset)
    twin = load_config(preset.replace("-llama", ""))
    assert config.model.arch == arch and config.objective == twin.objective
    assert config.model.time_conditioning == twin.model.time_conditioning
    assert (config.diffusion, config.data, config.optim, config.train) == (twin.diffusion, twin.data, twin.optim,
                                                                            twin.train)  # fmt: skip


@pytest.mark.parametrize("preset", ["tiny-llama", "tiny-llama-ar"])
def test_the_llama_presets_count_their_weights(preset):
    # 84 characters and one more state (the mask, or BOS); width 128, 6 blocks, SwiGLU 344 = 2/3 of 4 x 128 rounded
    # up to a multiple of 8; no biases, no conditioning: the embedding, q/k/v/o, 3 MLP maps, 2 norms, a final norm
    # and an untied output map
    vocab, dim, blocks, mlp = 85, 128, 6, 344
    assert (
        _parameters(preset, []) == vocab * dim + blocks * (4 * dim * dim + 3 * dim * mlp + 2 * dim) + dim + vocab * dim
    )


@pytest.mark.parametrize("preset, published", [("tiny", 4_055_509), ("tiny-block", 4_055_509), ("tiny-ar", 3_196_757)])
def test_the_published_shape_gives_the_published_parameter_counts(preset, published):
    # the likelihood table (docs/benchmarks/likelihood.md) lists these counts for 84 characters at 256 x 4 x 4
    assert _parameters(preset, shape_overrides(PUBLISHED)) == published
    assert _parameters(preset, shape_overrides("preset")) == _parameters(preset, [])


@pytest.mark.parametrize("text", ["256x4", "256x4x0", "wide", "256x4x4x1", "-256x4x4"])
def test_a_malformed_shape_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="WIDTHxBLOCKSxHEADS"):
        shape_overrides(text)
