"""The command line on an autoregressive checkpoint: the same commands, exact likelihoods, prefix-only infilling."""

import json
import re

import pytest
import torch
from cli_run import assert_user_error, run_cli

import scorediff
from scorediff.data.zero_shot import wikitext_detokenize


def test_sample_with_and_without_the_cache(capsys, trained_ar_run):
    base = ["sample", "--checkpoint", str(trained_ar_run), "--length", "24", "--num-samples", "2", "--seed", "3"]
    code, cached, _ = run_cli(capsys, [*base, "--temperature", "0.8", "--top-p", "0.9"])
    # a sample may hold newlines, and an end token prints as nothing
    assert code == 0 and len(re.findall(r"--- sample \d ---\n(.{20,24})\n", cached, re.S)) == 2
    code, uncached, _ = run_cli(capsys, [*base, "--temperature", "0.8", "--top-p", "0.9", "--no-cache"])
    assert code == 0 and uncached == cached
    code, other, _ = run_cli(capsys, [*base, "--temperature", "0.8"])
    assert code == 0 and other != cached  # top-p changes the draw


def test_infill_continues_a_prefix_only(capsys, trained_ar_run):
    code, out, _ = run_cli(
        capsys, ["infill", "--checkpoint", str(trained_ar_run), "--prefix", "To be, ", "--length", "10"]
    )
    text = out.rstrip("\n")
    assert code == 0 and text.startswith("To be, ") and len(text) == 17
    for extra in (["--prefix", "To", "--suffix", " be", "--length", "3"], ["--template", "To [MASK:3] be"]):
        assert_user_error(
            capsys,
            ["infill", "--checkpoint", str(trained_ar_run), *extra],
            r"autoregressive model .* can only continue a --prefix",
        )


def test_eval_reports_the_exact_likelihood_with_the_same_keys(capsys, trained_ar_run, trained_run, tmp_path):
    keys = {"bits_per_token", "bits_per_char", "perplexity"}
    results = {}
    for name, run in (("ar", trained_ar_run), ("diffusion", trained_run)):
        target = tmp_path / f"{name}.json"
        code, out, _ = run_cli(
            capsys, ["eval", "--checkpoint", str(run), "--num-t", "2", "--max-windows", "6", "--json", str(target)]
        )
        assert code == 0
        results[name] = json.loads(target.read_text())
        assert keys | {f"{k}_ci95" for k in keys} <= set(results[name])
        assert ("bits per token  =" in out) == (name == "ar") and ("bits per token  <=" in out) == (name != "ar")
    assert results["ar"]["exact"] is True and results["diffusion"]["exact"] is False
    assert results["ar"]["kind"] == "autoregressive" and results["ar"]["num_t"] is None
    # the same six windows of the same split
    assert results["ar"]["tokens"] == results["diffusion"]["tokens"] == 6 * 32


def test_info_says_which_kind(capsys, trained_ar_run, trained_run):
    for run, kind in ((trained_ar_run, "autoregressive"), (trained_run, "diffusion")):
        code, out, _ = run_cli(capsys, ["info", "--checkpoint", str(run), "--json"])
        info = json.loads(out)
        assert code == 0 and info["kind"] == kind and info["validation_exact"] == (kind == "autoregressive")
        # per block: qkv 3 D^2, attention output D^2, MLP 2 r D^2; then the output map D V; 6 FLOPs per weight;
        # attention 12 L D per block
        m = info["model"]
        d, blocks = m["hidden_size"], m["n_blocks"]
        weights = blocks * (4 + 2 * m["mlp_ratio"]) * d * d + d * m["vocab_size"]
        assert info["training_flops_per_token"] == 6 * weights + 12 * blocks * m["seq_len"] * d
    code, out, _ = run_cli(capsys, ["info", "--checkpoint", str(trained_ar_run)])
    assert re.search(r"kind\s+autoregressive", out) and "graph" not in out.split("model")[0]


def test_flags_of_the_other_kind_are_refused(capsys, trained_ar_run, trained_run):
    ar = ["sample", "--checkpoint", str(trained_ar_run)]
    diffusion = ["sample", "--checkpoint", str(trained_run)]
    assert_user_error(
        capsys, [*ar, "--predictor", "euler"], r"--predictor applies to diffusion models; .* autoregressive"
    )
    assert_user_error(capsys, [*ar, "--steps", "8"], r"--steps applies to diffusion models")
    assert_user_error(capsys, [*ar, "--greedy-tail"], r"--greedy-tail applies to diffusion models")
    assert_user_error(capsys, [*diffusion, "--top-p", "2"], r"--top-p must be in \(0, 1\]; got 2")
    assert_user_error(capsys, [*ar, "--top-p", "1.5"], r"--top-p must be in \(0, 1\]; got 1.5")
    assert_user_error(capsys, [*ar, "--top-p", "0"], r"--top-p must be in \(0, 1\]; got 0")
    assert_user_error(capsys, [*ar, "--temperature", "0"], r"--temperature must be finite and > 0; got 0")


def test_zero_shot_eval_of_a_saved_copy_is_the_exact_nll_of_its_windows(capsys, trained_ar_run, cli_corpus, tmp_path):
    """``eval --dataset wikitext2 --dataset-path`` reads a save_to_disk copy, detokenises each row, ends it with
    the tokenizer's separator and cuts SEDD's windows; for an AR model the result is the exact NLL of those
    windows, rebuilt here by hand."""
    datasets = pytest.importorskip("datasets")
    lines = cli_corpus.read_text().splitlines()[:400]
    rows = [" " + line.replace(",", " @,@ ") + " \n" for line in lines]  # WikiText's spacing, undone by the rules
    datasets.DatasetDict({"test": datasets.Dataset.from_dict({"text": rows})}).save_to_disk(tmp_path / "wt2")
    target = tmp_path / "zero_shot.json"
    command = ["eval", "--checkpoint", str(trained_ar_run), "--dataset", "wikitext2", "--dataset-path"]
    code, out, err = run_cli(capsys, [*command, str(tmp_path / "wt2"), "--json", str(target)])
    assert code == 0, err
    result = json.loads(target.read_text())
    loaded = scorediff.load(trained_ar_run)
    seq_len, windows = loaded.model.config.seq_len, []
    for shard in range(8):  # SEDD's num_proc=8 shards of 50 rows, each cut alone
        stream = []
        for row in rows[50 * shard : 50 * shard + 50]:
            stream += loaded.tokenizer.encode(wikitext_detokenize(row)) + loaded.tokenizer.separator
        windows.append(torch.tensor(stream[: len(stream) // seq_len * seq_len]).view(-1, seq_len))
    windows = torch.cat(windows)
    with torch.no_grad():
        nll = loaded.objective.nll(loaded.model, windows)
    assert result["windows"] == len(windows) and result["data"] == "wikitext2 test (sedd windows)"
    assert result["nats_per_token"] == pytest.approx(float(nll.sum()) / windows.numel(), abs=1e-6)
    assert result["exact"] is True and "wikitext2 test" in out
    assert_user_error(capsys, [*command, str(tmp_path / "absent")], r"cannot read wikitext2 from .*absent")
    assert_user_error(capsys, [*command[:-3], "--dataset", "wiki"], r"--dataset must be one of wikitext2, wikitext103")
    code, _, err = run_cli(capsys, [*command, str(tmp_path / "wt2"), "--chunking", "mdlm"])
    assert code == 0, err  # the char tokenizer's end-of-text token is one token, as MDLM's windows need
