"""``scorediff sample --prompts`` with an adaptive order: the end token waits for the answer before it by default
(``wait_for_answers`` sets ``SamplingOptions.end_token``), ``--end-anywhere`` restores the old rule, and its misuse
is one line."""

import json

import pytest
import yaml
from cli_run import assert_user_error, run_cli
from micro import micro_values

import scorediff
from scorediff import SamplingOptions
from scorediff.cli import main
from scorediff.commands import UsageError
from scorediff.commands.prompts import wait_for_answers
from scorediff.data.examples import end_token


@pytest.fixture(scope="module")
def prompted(tmp_path_factory):
    """A diffusion model trained 30 steps on "rev abc=" -> "cba", and a file of its prompts."""
    root = tmp_path_factory.mktemp("prompted_end")
    words = ["ab", "cab", "dcba", "bd", "acd", "bbca"] * 20
    data = root / "rev.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"rev {w}=", "answer": w[::-1]}) + "\n" for w in words))
    values = micro_values(data, root / "cache", "diffusion", max_steps=30, save_every=30)
    values["model"].update(seq_len=16, time_conditioning=False)
    values["diffusion"] = {"mask_count": True}
    (root / "run.yaml").write_text(yaml.safe_dump(values))
    assert main(["train", "--config", str(root / "run.yaml"), "--out", str(root), "--name", "run", "--quiet"]) == 0
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"rev {w}="}) + "\n" for w in words[:6]))
    return root / "run", prompts


def test_an_order_waits_for_the_answer_unless_told_otherwise(prompted):
    loaded = scorediff.load(prompted[0])
    end = end_token(loaded.tokenizer)
    ordered = SamplingOptions(order="confidence")
    assert end is not None and wait_for_answers(ordered, loaded, anywhere=False).end_token == end
    assert wait_for_answers(ordered, loaded, anywhere=True).end_token is None
    assert wait_for_answers(SamplingOptions(), loaded, anywhere=False) == SamplingOptions()  # the samplers rank none
    with pytest.raises(UsageError, match="^--end-anywhere applies with --order confidence, margin or entropy$"):
        wait_for_answers(SamplingOptions(), loaded, anywhere=True)


@pytest.mark.parametrize("extra", [[], ["--end-anywhere"]])
def test_both_rules_answer_every_prompt(capsys, prompted, tmp_path, extra):
    run, prompts = prompted
    out = tmp_path / "answers.jsonl"
    argv = ["sample", "--checkpoint", str(run), "--prompts", str(prompts), "--order", "confidence", "--out", str(out)]
    code, _, err = run_cli(capsys, [*argv, *extra])
    assert code == 0, err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in records] == [json.loads(line)["prompt"] for line in prompts.read_text().splitlines()]


def test_end_anywhere_without_prompts_or_an_order_is_one_line(capsys, prompted):
    run, prompts = prompted
    assert_user_error(
        capsys, ["sample", "--checkpoint", str(run), "--end-anywhere"], "--end-anywhere applies with --prompts"
    )
    assert_user_error(
        capsys, ["sample", "--checkpoint", str(run), "--prompts", str(prompts), "--end-anywhere"],
        "--end-anywhere applies with --order",
    )  # fmt: skip
