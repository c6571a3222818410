"""``--dtype``: every command that runs a model takes it beside ``--device`` (``commands.add_load_options``), passes
it to ``scorediff.load``, and refuses an unknown dtype in argparse's one line."""

import argparse
import json
from pathlib import Path

import pytest
import torch
from cli.cli_run import assert_user_error, run_cli

import scorediff
import scorediff.commands.generate as generate
from scorediff.cli import build_parser

LLAMA = Path(__file__).parents[1] / "fixtures" / "llama_family" / "tiny_llama"


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_that_places_a_model_takes_dtype():
    """``--dtype`` comes with ``--device`` (train's ``--device`` places a training run, which keeps float32
    weights and bf16 autocast), with the three choices and float32 by default."""
    with_device = {name for name, parser in _subcommands().items() if "--device" in parser._option_string_actions}
    with_dtype = {name for name, parser in _subcommands().items() if "--dtype" in parser._option_string_actions}
    assert with_dtype == with_device - {"train"}
    assert {"sample", "infill", "eval", "eval-dna", "lm-eval", "playground"} <= with_dtype
    for name in with_dtype:
        option = _subcommands()[name]._option_string_actions["--dtype"]
        assert (option.default, tuple(option.choices)) == ("float32", ("float32", "bfloat16", "float16"))


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_an_unknown_dtype_is_argparses_one_line(capsys, command):
    assert_user_error(capsys, [command, "--checkpoint", str(LLAMA), "--dtype", "int8"],
                      r"argument --dtype: invalid choice: 'int8'")  # fmt: skip


def test_sample_loads_the_model_in_the_dtype_asked_for(capsys, monkeypatch):
    """The flag reaches ``load``: the model ``sample`` draws from holds bf16 weights."""
    seen = []
    original = generate.load

    def spy(*args, **kwargs):
        loaded = original(*args, **kwargs)
        seen.append({p.dtype for p in loaded.model.parameters()})
        return loaded

    monkeypatch.setattr(generate, "load", spy)
    argv = ["sample", "--checkpoint", str(LLAMA), "--length", "8", "--device", "cpu", "--dtype", "bfloat16"]
    code, out, err = run_cli(capsys, argv)
    assert code == 0, err
    assert seen == [{torch.bfloat16}] and out.strip()


def test_eval_in_bf16_is_the_float32_nll_to_bf16_precision(capsys, tmp_path):
    """The exact NLL of the AR llama on the same windows, float32 and bf16 weights: within 16 * 2^-8 relative (the
    logits' bound of tests/test_placement.py), and not equal (the weights were rounded)."""
    (tmp_path / "text.txt").write_text("to be or not to be, that is the question. " * 8)
    results = {}
    for dtype in ("float32", "bfloat16"):
        out = tmp_path / f"{dtype}.json"
        argv = ["eval", "--checkpoint", str(LLAMA), "--data", str(tmp_path / "text.txt"), "--device", "cpu",
                "--dtype", dtype, "--json", str(out)]  # fmt: skip
        code, _, err = run_cli(capsys, argv)
        assert code == 0, err
        results[dtype] = json.loads(out.read_text())
    exact, rounded = results["float32"]["nats_per_token"], results["bfloat16"]["nats_per_token"]
    assert rounded == pytest.approx(exact, rel=16 * 2**-8) and rounded != exact
    assert scorediff.load(LLAMA, dtype="bfloat16").model.vocab_embed.weight.dtype == torch.bfloat16
