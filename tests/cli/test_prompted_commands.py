"""Prompted examples through the command line: train on prompt/answer JSONL, answer a file of prompts in any
order, score the answers given their prompts; and the mistakes a user can make with them."""

import json
import random

import pytest
import yaml
from cli_run import assert_user_error, run_cli
from micro import micro_values

from scorediff.cli import main


@pytest.fixture(scope="session")
def reversal(tmp_path_factory):
    """Prompt ``rev abc=``, answer ``cba``: 400 examples."""
    root = tmp_path_factory.mktemp("prompted")
    rng = random.Random(0)
    words = ["".join(rng.choice("abcd") for _ in range(rng.randint(2, 5))) for _ in range(400)]
    path = root / "rev.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"rev {w}=", "answer": w[::-1]}) + "\n" for w in words))
    return path


def _run(root, data, objective, name):
    values = micro_values(data, root / "cache", objective, eval_every=3)
    values["model"]["seq_len"] = 16
    if objective == "diffusion":
        values["model"]["time_conditioning"] = False
        values["diffusion"] = {"mask_count": True}
    del values["train"]["device"]
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    assert (
        main(["train", "--config", str(path), "--out", str(root), "--name", name, "--quiet", "--num-samples", "2"]) == 0
    )
    return root / name


@pytest.fixture(scope="session")
def prompted_runs(tmp_path_factory, reversal):
    root = tmp_path_factory.mktemp("prompted_runs")
    return {kind: _run(root, reversal, kind, kind) for kind in ("diffusion", "autoregressive")}


def _calls(err: str) -> int:
    """The network calls of every batch, from --stats lines on stderr."""
    return sum(json.loads(line)["nfe"] for line in err.splitlines() if line.startswith("{"))


def test_train_eval_and_answer_prompts(capsys, prompted_runs, reversal, tmp_path):
    for kind, run in prompted_runs.items():
        metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        scored = [m for m in metrics if "val_tokens" in m]
        assert scored and scored[-1]["val_tokens"] < 20 * 16  # only answer tokens are scored, prompts are given
        out = tmp_path / f"{kind}.jsonl"
        extra = ["--order", "confidence", "--tokens-per-step", "2"] if kind == "diffusion" else []
        ask = ["sample", "--checkpoint", str(run), "--prompts", str(reversal), "--out", str(out), *extra, "--stats"]
        code, _, err = run_cli(capsys, ask)
        assert code == 0, err
        if kind == "diffusion":  # two rounds of refilling 3 positions, 2 a call: 2 more calls per round and batch
            calls = _calls(err)
            remasked = tmp_path / "remasked.jsonl"
            code, _, err = run_cli(capsys, [*ask[:6], str(remasked), *extra, "--stats", "--remask-rounds", "2",
                                            "--remask-tokens", "3"])  # fmt: skip
            assert code == 0 and len(remasked.read_text().splitlines()) == len(out.read_text().splitlines())
            batches = _calls(err) - calls
            assert batches > 0 and batches % 4 == 0, (calls, batches)
        records = [json.loads(line) for line in out.read_text().splitlines()]
        source = [json.loads(line) for line in reversal.read_text().splitlines()]
        assert [r["prompt"] for r in records] == [s["prompt"] for s in source]  # one answer per prompt, in order
        assert all(len(r["answer"]) <= 16 - len(r["prompt"]) and "\n" not in r["answer"] for r in records)
        code, text, err = run_cli(capsys, ["eval", "--checkpoint", str(run), "--data", str(reversal), "--num-t", "2",
                                           "--max-windows", "40", "--json", str(tmp_path / "e.json")])  # fmt: skip
        assert code == 0, err
        result = json.loads((tmp_path / "e.json").read_text())
        answers = sum(len(s["answer"]) + 1 for s in source[::10][:40])  # the spread of 40 of 400, with end tokens
        assert result["prompted"] and result["windows"] == 40 and result["tokens"] >= answers - 40
        assert "answer tokens given their prompts" in text


def test_prompted_mistakes_are_one_line_and_write_nothing(capsys, prompted_runs, reversal, tmp_path):
    diffusion, ar = str(prompted_runs["diffusion"]), str(prompted_runs["autoregressive"])
    out = tmp_path / "answers.jsonl"
    ask = ["sample", "--prompts", str(reversal), "--out", str(out), "--checkpoint"]
    assert_user_error(capsys, [*ask, ar, "--order", "confidence"], r"--order applies to diffusion models")
    assert_user_error(capsys, [*ask, diffusion, "--order", "margin", "--tokens-per-step", "0"],
                      r"--tokens-per-step must be > 0; got 0")  # fmt: skip
    assert_user_error(capsys, [*ask, diffusion, "--order", "margin", "--threshold", "0.5"], r"--threshold applies")
    assert_user_error(capsys, [*ask, diffusion, "--remask-rounds", "2"], r"--remask-rounds applies with --order")
    assert_user_error(capsys, [*ask, diffusion, "--order", "margin", "--remask-tokens", "2"],
                      r"--remask-tokens applies with --remask-rounds")  # fmt: skip
    assert_user_error(capsys, [*ask, diffusion, "--order", "margin", "--remask-rounds", "-1"],
                      r"--remask-rounds must be > 0; got -1")  # fmt: skip
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "rev ab="}\n{"question": "x"}\n')
    assert_user_error(capsys, ["sample", "--checkpoint", diffusion, "--prompts", str(bad)],
                      r"bad.jsonl:2 needs string fields 'prompt' and 'answer'")  # fmt: skip
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"prompt": "rev " + "a" * 30 + "="}) + "\n")
    assert_user_error(capsys, ["sample", "--checkpoint", diffusion, "--prompts", str(long)],
                      r"long.jsonl:1: the prompt and answer take 35 tokens; the model's context is 16")  # fmt: skip
    assert not out.exists()


def test_training_data_mistakes(capsys, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    data = tmp_path / "ex.jsonl"
    values = micro_values(data, tmp_path / "cache")
    values["model"]["seq_len"] = 8
    del values["train"]["device"]
    config = tmp_path / "micro.yaml"
    config.write_text(yaml.safe_dump(values))
    train = ["train", "--config", str(config), "--out", str(runs), "--quiet"]
    data.write_text(json.dumps({"prompt": "abc=", "answer": "cbacba"}) + "\n")
    assert_user_error(capsys, train, r"ex.jsonl:1: the prompt and answer take 10 tokens; the model's context is 8")
    data.write_text(json.dumps({"tokens": [1, 2, 9, 1, 1, 1, 1, 1], "given": [True] * 4 + [False] * 4}) + "\n")
    assert_user_error(capsys, train, r"declare their vocabulary with --data.num_tokens=N")
    assert_user_error(
        capsys, [*train, "--data.num_tokens=5"], r"ex.jsonl:1: token 9 is outside the declared vocabulary"
    )
    data.write_text(json.dumps({"tokens": [1, 2], "given": [True]}) + "\n")
    assert_user_error(capsys, [*train, "--data.num_tokens=5"], r"needs lists 'tokens' and 'given' of one length")
    assert list(runs.iterdir()) == []


def test_a_block_larger_than_the_context_is_a_one_line_error(capsys, prompted_runs):
    """It used to leak the library's ValueError as a traceback; every library input error is a ScorediffError."""
    for run in prompted_runs.values():
        argv = ["sample", "--checkpoint", str(run), "--length", "40", "--block", "1000"]
        assert_user_error(capsys, argv, r"block must be in \[1, 16\]; got 1000")


SAMPLE_FLAGS = [
    "--steps",
    "--length",
    "--num-samples",
    "--top-p",
    "--temperature",
    "--block",
    "--order",
    "--tokens-per-step",
    "--threshold",
    "--predictor",
    "--sample-tokens",
    "--greedy-tail",
    "--no-cache",
]
SAMPLE_VALUES = ["-1", "0", "1", "2", "3", "40", "0.5", "nan", "x", "confidence", "margin", "random", "first_hitting"]


def test_sampling_options_past_argument_parsing_never_raise(capsys, prompted_runs):
    """Random option lists against real checkpoints: each run either samples (exit 0) or is refused in one line
    (exit 2), never a traceback."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    words = st.lists(st.one_of(st.sampled_from(SAMPLE_FLAGS), st.sampled_from(SAMPLE_VALUES)), max_size=8)
    outcomes = set()

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.sampled_from(sorted(prompted_runs)), words)
    def check(kind, argv):
        code, out, err = run_cli(capsys, ["sample", "--checkpoint", str(prompted_runs[kind]), *argv])
        assert "Traceback" not in err
        assert (code == 0 and out) or (code == 2 and len(err.strip().splitlines()) == 1), (argv, code, err)
        outcomes.add(code)

    check()
    assert outcomes == {0, 2}  # the cases reached sampling, not only the parser
