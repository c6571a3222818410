"""The command line end to end on a micro model: train, resume, sample, infill, eval, info."""

import json
import math
import re

import torch
from cli_run import run_cli

from scorediff import load
from scorediff.data.tokenizers import load_tokenizer
from scorediff.training.distributed import DistInfo
from scorediff.training.evaluate import nats_per_window
from scorediff.training.setup import prepare_data


def test_train_prints_run_directory_bound_and_samples(capsys, micro_yaml, tmp_path):
    code, out, _ = run_cli(
        capsys,
        ["train", "--config", str(micro_yaml), "--out", str(tmp_path), "--name", "r", "--quiet", "--num-samples", "2"],
    )
    assert code == 0
    assert f"run directory: {tmp_path / 'r'}" in out
    assert re.search(r"validation bound: \d+\.\d+ bits/token", out)
    assert "--- sample 2 ---" in out and "drawing" not in out  # --quiet: the samples alone
    run = tmp_path / "r"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss_nats_per_token" in r] == [2, 4, 6]
    assert (run / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    code, out, _ = run_cli(
        capsys, ["train", "--resume", str(run), "--train.max_steps=8", "--quiet", "--num-samples", "0"]
    )
    assert code == 0 and "finished step 8" in out
    assert (run / "checkpoints" / "step_00000008").is_dir()
    code, out, _ = run_cli(capsys, ["train", "--resume", str(run), "--train.max_steps=9", "--num-samples", "1"])
    said = "\ndrawing a sample to show (--num-samples 0 skips them)\n\n--- sample 1 ---\n"
    assert code == 0 and said in out  # a wait that takes minutes for a large model is said before it starts


def test_sample_text_jsonl_and_trajectories(capsys, trained_run, tmp_path):
    code, out, _ = run_cli(capsys, ["sample", "--checkpoint", str(trained_run), "--length", "20", "--steps", "4"])
    assert code == 0 and len(out.rstrip("\n")) == 20
    target = tmp_path / "s.jsonl"
    code, _, _ = run_cli(
        capsys,
        [
            "sample",
            "--checkpoint",
            str(trained_run),
            "--num-samples",
            "3",
            "--length",
            "20",
            "--steps",
            "4",
            "--format",
            "jsonl",
            "--out",
            str(target),
            "--seed",
            "5",
        ],
    )
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    # an end token prints as nothing
    assert code == 0 and len(rows) == 3 and all(16 <= len(r["text"]) <= 20 and r["seed"] == 5 for r in rows)
    code, _, _ = run_cli(
        capsys, ["sample", "--checkpoint", str(trained_run), "--steps", "6", "--trajectory", str(tmp_path / "t.html")]
    )
    page = (tmp_path / "t.html").read_text()
    assert code == 0 and page.count('class="row"') == 8 and 'class="mask"' in page  # start, 6 steps, denoised
    code, _, _ = run_cli(
        capsys, ["sample", "--checkpoint", str(trained_run), "--steps", "6", "--trajectory", str(tmp_path / "t.png")]
    )
    assert code == 0 and (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"


def test_infill_keeps_the_given_text(capsys, trained_run):
    code, out, _ = run_cli(
        capsys,
        [
            "infill",
            "--checkpoint",
            str(trained_run),
            "--prefix",
            "To be, ",
            "--suffix",
            " question",
            "--length",
            "9",
            "--steps",
            "4",
        ],
    )
    text = out.rstrip("\n")
    assert code == 0 and text.startswith("To be, ") and text.endswith(" question") and len(text) == 7 + 9 + 9
    code, out, _ = run_cli(
        capsys,
        [
            "infill",
            "--checkpoint",
            str(trained_run),
            "--template",
            "[MASK:3]or [MASK:5] the[MASK]",
            "--steps",
            "4",
            "--num-samples",
            "2",
        ],
    )
    samples = re.findall(r"--- sample \d ---\n(.*)", out)
    assert code == 0 and len(samples) == 2
    assert all(re.fullmatch(r"(?s).{3}or .{5} the.", s) for s in samples)


def test_eval_and_info(capsys, trained_run, tmp_path, cli_corpus):
    target = tmp_path / "e.json"
    code, out, _ = run_cli(
        capsys, ["eval", "--checkpoint", str(trained_run), "--num-t", "2", "--max-windows", "8", "--json", str(target)]
    )
    result = json.loads(target.read_text())
    assert code == 0 and "bits per char" in out and result["windows"] == 8
    low, high = result["bits_per_token_ci95"]
    mean = result["bits_per_token"]
    assert abs((high - mean) - (mean - low)) < 1e-9 and 0 < high - mean < mean  # symmetric, not degenerate
    nats_low, nats_high = result["nats_per_token_ci95"]  # one interval, reported in three units
    assert abs(low - nats_low / math.log(2)) < 1e-9 and abs(high - nats_high / math.log(2)) < 1e-9
    assert abs(result["perplexity_ci95"][1] - math.exp(nats_high)) < 1e-9 * result["perplexity_ci95"][1]
    assert abs(result["bits_per_char"] - result["bits_per_token"]) < 1e-9  # characters are the tokens
    assert abs(result["perplexity"] - 2 ** result["bits_per_token"]) < 1e-6 * result["perplexity"]
    code, _, _ = run_cli(
        capsys,
        [
            "eval",
            "--checkpoint",
            str(trained_run),
            "--data",
            str(cli_corpus),
            "--num-t",
            "2",
            "--max-windows",
            "3",
            "--json",
            str(target),
        ],
    )
    assert code == 0 and json.loads(target.read_text())["windows"] == 3
    code, out, _ = run_cli(capsys, ["info", "--checkpoint", str(trained_run)])
    assert code == 0 and re.search(r"step\s+6", out) and "CharTokenizer" in out
    code, out, _ = run_cli(capsys, ["info", "--checkpoint", str(trained_run), "--json"])
    info = json.loads(out)
    vocab = load_tokenizer(trained_run).vocab_size
    assert info["model"]["vocab_size"] == vocab + 1 and info["step"] == 6


def test_eval_raw_weights_scores_the_trained_weights(capsys, trained_run, tmp_path):
    scored = {}
    for flags in ([], ["--raw-weights"]):
        target = tmp_path / f"e{len(flags)}.json"
        argv = ["eval", "--checkpoint", str(trained_run), "--num-t", "2", "--max-windows", "8", "--json", str(target)]
        code, out, _ = run_cli(capsys, argv + flags)
        result = json.loads(target.read_text())
        assert code == 0 and f"{result['weights']} weights" in out
        scored[result["weights"]] = result["nats_per_token"]
    assert sorted(scored) == ["ema", "raw"]
    # the same windows and seed, scored with the raw weights through the library
    loaded = load(trained_run, ema=False)
    windows = prepare_data(loaded.config, DistInfo(), loaded.path).val.spread_examples(8)["x_0"]
    generator = torch.Generator().manual_seed(0)
    nats = nats_per_window(loaded.objective, loaded.model, windows, generator, 2, 16, "cpu", None)
    assert abs(float(nats.mean()) / windows.shape[1] - scored["raw"]) < 1e-9
    assert abs(scored["raw"] - scored["ema"]) > 1e-4  # six steps at EMA 0.9 leave the average behind


def test_demo_reports_distances_and_bound_gaps(capsys):
    code, out, _ = run_cli(
        capsys, ["demo", "--num-tokens", "3", "--seq-len", "2", "--samples", "4000", "--steps", "16", "--json"]
    )
    results = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and len(results) == 7
    floor = results[0]["noise_floor_total_variation"]
    assert all(r["total_variation"] < floor + 0.05 for r in results if "total_variation" in r)
    assert all(abs(r["bound_minus_nll_nats"]) < 0.5 for r in results if "bound_minus_nll_nats" in r)
