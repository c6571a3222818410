"""``scorediff plan``: the report, its JSON, and one-line refusals that write nothing."""

import json

import pytest
from cli_run import assert_user_error, run_cli


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
