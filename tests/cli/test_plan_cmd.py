"""``scorediff plan``: the report, its JSON, and one-line refusals that write nothing."""

import json
from pathlib import Path

import pytest
from cli_run import assert_user_error, run_cli

import scorediff


def test_plan_small_on_eight_h100(capsys, tmp_path):
    out = tmp_path / "plan.json"
    code, stdout, _ = run_cli(capsys, ["plan", "--config", "small", "--gpus", "8", "--gpu", "h100", "--json", str(out)])
    assert code == 0
    plan = json.loads(out.read_text())
    assert plan["micro_batch"] == 512 // 8 and plan["gpus"] == 8
    assert plan["tokens"] == 400_000 * 512 * 1024
    assert plan["gpu"]["bf16_tflops"] == 989.0
    # GPT-2's 50,257 tokens and the mask: embedding and output rows of the absorbing graph's network
    assert plan["parameters"] > 50_258 * 768 * 2
    for layout in ("ddp", "fsdp"):
        state = plan[layout]["state"]
        assert state["total"] == sum(v for k, v in state.items() if k != "total")
        assert plan[layout]["total"] == state["total"] + plan[layout]["activations"]
    assert plan["fsdp"]["state"]["weights"] <= plan["ddp"]["state"]["weights"] / 7.9
    hours = plan["tokens"] * plan["flops_per_token"] / (8 * 989e12 * 0.4) / 3600
    assert plan["seconds"] == pytest.approx(hours * 3600)
    assert f"{hours:,.1f} hours" in stdout and "FSDP figures are the formula" in stdout
    assert "train.parallel=fsdp trains so under torchrun" in stdout and "runs DDP" not in stdout
    assert plan["fsdp"]["note"] == "formula for train.parallel=fsdp: FSDP2 shards by N; not measured"


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["--gpu", "nosuch"], r"unknown --gpu 'nosuch'; known: h100, h100-pcie, h200"),
        (["--gpus", "0"], r"--gpus must be >= 1; got 0"),
        (["--gpus", "3"], r"batch_size=16 must be divisible by world_size \* grad_accum = 3 \* 1"),
        (["--mfu", "1.5"], r"--mfu must be in \(0, 1\]"),
    ],
)
def test_plan_refuses_in_one_line(capsys, tmp_path, argv, pattern):
    out = tmp_path / "plan.json"
    assert_user_error(capsys, ["plan", "--config", "tiny", "--json", str(out), *argv], pattern)
    assert not out.exists()


TINY_LLAMA = Path(__file__).parents[1] / "fixtures" / "llama_family" / "tiny_llama"
TINY_LLAMA_SHAPE = ("--model.arch=llama", "--model.hidden_size=32", "--model.n_blocks=2", "--model.n_heads=4",
                    "--model.n_kv_heads=2", "--model.intermediate_size=64", "--model.tie_embeddings=false")  # fmt: skip


@pytest.mark.parametrize("objective", ["autoregressive", "a2d"])
def test_plan_of_a_run_from_a_model_counts_the_model(capsys, tmp_path, objective):
    """With ``train.init`` the plan reads the model on the meta device: the vocabulary is its tokenizer's (100 tokens
    here; the embedded corpus's characters would be 84), and the run's network is checked to take its weights (as an
    AR model for ``tiny-llama-ar``, adapted for ``tiny-a2d``), before anything is rented."""
    out = tmp_path / "plan.json"
    config = "tiny-llama-ar" if objective == "autoregressive" else "tiny-a2d"
    argv = ["plan", "--config", config, f"--train.init={TINY_LLAMA}", *TINY_LLAMA_SHAPE, "--json", str(out)]
    code, _, err = run_cli(capsys, argv)
    assert code == 0, err
    loaded = scorediff.load(TINY_LLAMA, device="meta")
    parent = sum(p.numel() for p in loaded.model.parameters())  # 100 data tokens and scorediff's BOS
    # adapted: one more embedding row (the mask), and the output rows lose BOS and gain the mask: one row in all
    expected = parent if objective == "autoregressive" else parent + 32
    assert json.loads(out.read_text())["parameters"] == expected


def test_plan_refuses_a_model_whose_shape_is_not_the_runs(capsys, tmp_path):
    out = tmp_path / "plan.json"
    argv = ["plan", "--config", "tiny-llama-ar", f"--train.init={TINY_LLAMA}", *TINY_LLAMA_SHAPE, "--json", str(out)]
    pattern = r"train.init: the weights in .*tiny_llama do not match this run's network .* expected \(.*48"
    assert_user_error(capsys, [*argv, "--model.hidden_size=48"], pattern)
    assert_user_error(capsys, [*argv[:3], f"--train.init={tmp_path / 'nowhere'}"], r"train.init: .*nowhere")
    assert not out.exists()
