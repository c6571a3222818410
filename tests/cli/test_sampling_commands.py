"""Sampling from the command line: caching, the first-hitting sampler, statistics, lengths past the context."""

import json
import shutil

from cli_run import assert_user_error, run_cli


def stats_line(err: str) -> dict:
    return json.loads(err.strip().splitlines()[-1])


def test_cache_changes_the_cost_not_the_text(capsys, trained_radd_run):
    base = ["sample", "--checkpoint", str(trained_radd_run), "--num-samples", "2", "--steps", "256", "--stats"]
    code, cached, err = run_cli(capsys, base)
    fast = stats_line(err)
    code_plain, plain, err = run_cli(capsys, [*base, "--no-cache"])
    slow = stats_line(err)
    assert code == code_plain == 0 and cached == plain
    assert {"nfe", "steps", "seconds", "tokens_per_second"} <= set(fast)
    assert slow["nfe"] == 257 and fast["nfe"] <= 2 * 32 + 1 and fast["steps"] == 256
    assert fast["tokens_per_second"] > 0 and fast["seconds"] > 0


def test_first_hitting_and_tempering(capsys, trained_radd_run):
    base = ["sample", "--checkpoint", str(trained_radd_run), "--length", "20", "--stats"]
    code, out, err = run_cli(capsys, [*base, "--predictor", "first_hitting"])
    assert code == 0 and len(out.rstrip("\n")) == 20 and stats_line(err)["nfe"] == 20
    code, sharp, _ = run_cli(capsys, [*base, "--temperature", "0.5", "--top-p", "0.9", "--greedy-tail"])
    assert code == 0 and len(sharp.rstrip("\n")) == 20


def test_longer_than_the_context_for_both_kinds(capsys, trained_radd_run, trained_ar_run):
    for run in (trained_radd_run, trained_ar_run):
        code, out, err = run_cli(
            capsys, ["sample", "--checkpoint", str(run), "--length", "70", "--block", "16", "--stats"]
        )
        assert code == 0 and 60 <= len(out.rstrip("\n")) <= 70 and stats_line(err)["tokens"] == 70, err
        assert stats_line(err)["tokens_per_second"] > 0
    # infilling stays within one window, as before
    assert_user_error(
        capsys,
        ["infill", "--checkpoint", str(trained_ar_run), "--prefix", "To be", "--length", "60"],
        r"would be 65 tokens; the model's context is 32",
    )


def test_bad_sampling_requests(capsys, trained_radd_run, trained_run):
    radd = ["sample", "--checkpoint", str(trained_radd_run)]
    assert_user_error(capsys, [*radd, "--steps", "0"], r"--steps must be > 0; got 0")
    assert_user_error(capsys, [*radd, "--steps", "-3"], r"--steps must be > 0; got -3")
    assert_user_error(capsys, [*radd, "--temperature", "-1"], r"--temperature must be finite and > 0; got -1")
    assert_user_error(capsys, [*radd, "--top-p", "0"], r"--top-p must be in \(0, 1\]; got 0")
    assert_user_error(capsys, [*radd, "--block", "0"], r"--block must be a whole number >= 1; got 0")
    assert_user_error(
        capsys, [*radd, "--tokens-per-step", "0"], r"--tokens-per-step must be a whole number >= 1; got 0"
    )
    assert_user_error(capsys, [*radd, "--threshold", "0.5"], r"--threshold applies to the confidence order; got order")
    assert_user_error(
        capsys, [*radd, "--order", "confidence", "--threshold", "2"], r"--threshold must be in \(0, 1\]; got 2.0"
    )
    assert_user_error(capsys, [*radd, "--num-samples", "1000000000"], r"would need about [\d,.]+ GiB; the machine has")
    assert_user_error(capsys, [*radd, "--steps", "1000000000"], r"would need about [\d,.]+ GiB")
    assert_user_error(capsys, [*radd, "--length", "100", "--trajectory", "t.html"], r"one window of at most 32")
    # a time-conditioned absorbing model works with first-hitting too (at the drawn noise levels)
    code, out, _ = run_cli(capsys, ["sample", "--checkpoint", str(trained_run), "--predictor", "first_hitting"])
    assert code == 0 and len(out.rstrip("\n")) == 32


def test_infill_takes_the_decoding_orders(capsys, trained_radd_run):
    """--order on infill: the given text stays, 7 blanks 2 at a time take 4 calls, and one round refilling
    one position one more."""
    base = ["infill", "--checkpoint", str(trained_radd_run), "--template", "To [MASK:3] or [MASK:4] be", "--stats"]
    code, out, err = run_cli(capsys, [*base, "--order", "confidence", "--tokens-per-step", "2"])
    text = out.rstrip("\n")
    assert code == 0 and text.startswith("To ") and text[6:10] == " or " and text.endswith(" be")
    assert len(text) == 17 and stats_line(err)["nfe"] == 4
    code, out, err = run_cli(capsys, [*base, "--order", "margin", "--tokens-per-step", "2", "--remask-rounds", "1"])
    assert code == 0 and stats_line(err)["nfe"] == 5 and out.rstrip("\n")[6:10] == " or "


def test_sample_and_infill_follow_the_runs_decoding_order_unless_a_flag_says_otherwise(
    capsys, trained_radd_run, tmp_path
):
    """A run whose ``sampling`` section asks for the confidence order, 4 positions per call: 32 positions take 8
    calls; infill's 7 blanks take 2; ``--order random`` goes back to the sampler (its steps and final step)."""
    run = shutil.copytree(trained_radd_run, tmp_path / "run")
    for path in run.rglob("config.json"):
        config = json.loads(path.read_text())
        config["sampling"].update(order="confidence", tokens_per_step=4)
        path.write_text(json.dumps(config))
    code, _, err = run_cli(capsys, ["sample", "--checkpoint", str(run), "--stats"])
    assert code == 0 and stats_line(err)["nfe"] == 8
    code, out, err = run_cli(capsys, ["sample", "--checkpoint", str(run), "--stats", "--format", "jsonl"])
    record = json.loads(out.splitlines()[0])
    assert record["order"] == "confidence" and record["tokens_per_step"] == 4 and record["greedy"] is None
    template = ["--template", "To [MASK:3] or [MASK:4] be"]
    code, _, err = run_cli(capsys, ["infill", "--checkpoint", str(run), *template, "--stats"])
    assert code == 0 and stats_line(err)["nfe"] == 2
    plain = ["--order", "random", "--steps", "6", "--no-cache", "--stats"]
    code, _, err = run_cli(capsys, ["sample", "--checkpoint", str(run), *plain])
    assert code == 0 and stats_line(err)["nfe"] == 7  # 6 steps and the final denoising step
