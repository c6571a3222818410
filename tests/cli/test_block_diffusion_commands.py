"""The command line on a block diffusion checkpoint: sampled and scored like any diffusion model, continued from a
prefix only."""

import json
import re

from cli_run import assert_user_error, run_cli


def test_sample_past_the_context_with_and_without_the_cache(capsys, trained_block_run):
    base = ["sample", "--checkpoint", str(trained_block_run), "--length", "40", "--num-samples", "2", "--seed", "1"]
    code, cached, err = run_cli(capsys, [*base, "--steps", "64", "--stats"])
    stats = json.loads(err.strip().splitlines()[-1])
    assert code == 0 and len(re.findall(r"--- sample \d ---\n(.{40})\n", cached, re.DOTALL)) == 2
    code, uncached, _ = run_cli(capsys, [*base, "--steps", "64", "--no-cache"])
    assert code == 0 and uncached == cached
    # 40 tokens: a window of 32 (4 blocks) and one of 8 new tokens after 24 given; 16 steps a block
    assert stats["steps"] == 16 * 5 and stats["nfe"] <= 5 * 17  # finished blocks ride along with the next call


def test_an_order_decodes_inside_each_block(capsys, trained_block_run):
    """--order on a block diffusion model: 4 blocks of 8, 4 positions per call, so 2 calls a block; and on a
    prefix with infill, the prefix is kept."""
    base = ["sample", "--checkpoint", str(trained_block_run), "--length", "32", "--num-samples", "2", "--stats"]
    code, _, err = run_cli(capsys, [*base, "--order", "confidence", "--tokens-per-step", "4"])
    stats = json.loads(err.strip().splitlines()[-1])
    assert code == 0 and stats["nfe"] == stats["steps"] == 4 * 2
    code, out, _ = run_cli(
        capsys, ["infill", "--checkpoint", str(trained_block_run), "--prefix", "To be", "--length", "6", "--order",
                 "margin"],
    )  # fmt: skip
    assert code == 0 and out.startswith("To be") and len(out.rstrip("\n")) == 11


def test_infill_continues_a_prefix_only(capsys, trained_block_run):
    code, out, _ = run_cli(
        capsys, ["infill", "--checkpoint", str(trained_block_run), "--prefix", "To be, or", "--length", "11"]
    )
    text = out.rstrip("\n")
    assert code == 0 and text.startswith("To be, or") and len(text) == 20
    for extra in (["--prefix", "To", "--suffix", " be", "--length", "3"], ["--template", "To [MASK:3] be"]):
        assert_user_error(
            capsys,
            ["infill", "--checkpoint", str(trained_block_run), *extra],
            r"block diffusion model generates left to right, so it can only continue a --prefix",
        )
    assert_user_error(
        capsys,
        ["sample", "--checkpoint", str(trained_block_run), "--trajectory", "t.html"],
        r"--trajectory .* a block diffusion model fills one block at a time",
    )


def test_eval_and_info(capsys, trained_block_run, tmp_path):
    target = tmp_path / "block.json"
    code, out, _ = run_cli(
        capsys,
        ["eval", "--checkpoint", str(trained_block_run), "--num-t", "2", "--max-windows", "6", "--json", str(target)],
    )
    result = json.loads(target.read_text())
    assert code == 0 and "bits per token  <=" in out and result["exact"] is False and result["tokens"] == 6 * 32
    assert 2.0 < result["bits_per_char"] < 8.0  # a few steps of training on ~60 characters: near uniform
    code, out, _ = run_cli(capsys, ["info", "--checkpoint", str(trained_block_run), "--json"])
    info = json.loads(out)
    assert info["kind"] == "diffusion" and info["block_size"] == 8 and info["model"]["block_size"] == 8
