"""``--approximate-cache`` and ``--cache-block`` on ``scorediff sample`` and ``infill``: the flags reach
``SamplingOptions`` and the objective, and their misuse is one line naming the flag."""

import json

from cli_run import assert_user_error, run_cli

import scorediff
from scorediff.cli import build_parser
from scorediff.commands.sampling_options import sampling_options


def test_the_flags_set_the_options(trained_radd_run):
    argv = ["sample", "--checkpoint", str(trained_radd_run), "--order", "confidence", "--approximate-cache", "dual"]
    args = build_parser().parse_args([*argv, "--cache-block", "8"])
    options = sampling_options(args, scorediff.load(trained_radd_run))
    assert (options.approximate_cache, options.cache_block, options.order) == ("dual", 8, "confidence")


def test_a_sample_records_the_cache_and_blocks_of_one_are_exact(capsys, trained_radd_run):
    base = ["sample", "--checkpoint", str(trained_radd_run), "--num-samples", "2", "--length", "16"]
    base += ["--format", "jsonl", "--order", "confidence", "--stats"]
    texts = {}
    for kind in ("prefix", "dual"):
        code, out, err = run_cli(capsys, [*base, "--approximate-cache", kind, "--cache-block", "1"])
        assert code == 0, err
        records = [json.loads(line) for line in out.splitlines()]
        assert [(r["approximate_cache"], r["cache_block"]) for r in records] == [(kind, 1)] * 2
        assert all(len(r["text"]) == 16 for r in records)
        assert json.loads(err.strip().splitlines()[-1])["nfe"] == 16  # one call per block of one position
        texts[kind] = [r["text"] for r in records]
    # with one position per block every call is a block's first, over fresh keys: both caches decode alike
    assert texts["prefix"] == texts["dual"]


def test_infill_reads_the_flags(capsys, trained_radd_run):
    argv = ["infill", "--checkpoint", str(trained_radd_run), "--prefix", "To be", "--length", "10", "--suffix", "."]
    argv += ["--order", "margin", "--approximate-cache", "prefix", "--cache-block", "4"]
    code, out, err = run_cli(capsys, argv)
    assert code == 0 and out.startswith("To be") and out.rstrip("\n").endswith("."), err


def test_misuse_is_one_line(capsys, trained_radd_run, trained_run, trained_ar_run):
    radd = ["sample", "--checkpoint", str(trained_radd_run), "--length", "8"]
    assert_user_error(capsys, [*radd, "--approximate-cache", "dual"], "--approximate-cache applies to decoding in an")
    assert_user_error(capsys, [*radd, "--cache-block", "4"], "--cache-block applies with --approximate-cache")
    ordered = [*radd, "--order", "confidence", "--approximate-cache", "dual"]
    assert_user_error(capsys, [*ordered, "--cache-block", "0"], "--cache-block must be a whole number >= 1")
    assert_user_error(capsys, [*ordered, "--remask-rounds", "1"], "--approximate-cache does not combine with")
    timed = ["sample", "--checkpoint", str(trained_run), "--order", "confidence", "--approximate-cache", "prefix"]
    assert_user_error(capsys, timed, "--approximate-cache needs the absorbing graph and a time-independent network$")
    ar = ["sample", "--checkpoint", str(trained_ar_run), "--approximate-cache", "dual"]
    assert_user_error(capsys, ar, "--approximate-cache applies to diffusion models")
