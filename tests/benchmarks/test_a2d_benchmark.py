"""The A2D benchmark (``benchmarks/a2d.py``) on micro llamas trained a few steps here, adapted into block diffusion:
the steps of each run (from scratch, the compute of both), that the adapted run starts from the AR run's weights,
that the reported ratios are those of the scored numbers, and that stages run apart merge into the same report."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
from micro import corpus_head

from scorediff.loading import load
from scorediff.model import build_network
from scorediff.training.adapt import adapted_weights

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "a2d.py"
spec = importlib.util.spec_from_file_location("a2d_benchmark", SCRIPT)
a2d = importlib.util.module_from_spec(spec)
spec.loader.exec_module(a2d)

AR_STEPS, ADAPT_STEPS = 6, 4
MICRO = ["model.hidden_size=32", "model.cond_dim=16", "model.n_blocks=1", "model.n_heads=2", "model.seq_len=32",
         "optim.warmup_steps=2", "train.device=cpu"]  # fmt: skip


def argv(root: Path, corpus: Path, *extra: str) -> list[str]:
    return ["--ar-steps", str(AR_STEPS), "--adapt-steps", str(ADAPT_STEPS), "--batch", "4", "--windows", "6",
            "--num-t", "2", "--eval-every", "3", "--out", str(root), *extra,
            "--set", *MICRO, f"data.source={corpus}"]  # fmt: skip


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("a2d")
    corpus = corpus_head(root / "head.txt", 50_000)
    assert a2d.main(argv(root / "out", corpus)) == 0
    return root / "out", corpus, json.loads((root / "out" / "a2d.json").read_text())


def test_the_runs_take_their_steps_and_scratch_takes_both(result, tmp_path):
    _, corpus, report = result
    models = report["models"]
    # a block step runs every token twice (noised and clean): from scratch, 6 + 2 x 4 steps
    assert [models[name]["steps"] for name in ("ar", "adapted", "scratch")] == [6, 4, 14]
    assert report["summary"]["adapted_total_steps"] == 10 and report["summary"]["scratch_steps"] == 14
    assert a2d.stage_steps("scratch", a2d.parse(argv(tmp_path, corpus, "--into", "masked"))) == 10
    for name, entry in models.items():
        config = json.loads((Path(entry["run_dir"]) / "config.json").read_text())
        assert config["train"]["time_budget_minutes"] == 0 and config["train"]["max_steps"] == entry["steps"], name
    # the trainer's validations at every third step and at the end; the AR model's exact, the others' bounds
    assert [p["step"] for p in models["scratch"]["curve"]] == [3, 6, 9, 12, 14]
    assert [p["step"] for p in models["adapted"]["curve"]] == [3, 4]
    assert [models[name]["heldout"]["exact"] for name in ("ar", "adapted", "scratch")] == [True, False, False]
    assert all(models[name]["heldout"]["windows"] == 6 for name in models)


def test_the_adapted_run_starts_from_the_ar_runs_weights(result, tmp_path):
    out, corpus, report = result
    models = report["models"]
    assert models["adapted"]["init"] == models["ar"]["run_dir"] and models["scratch"]["init"] == ""
    # the adapted stage again, from a copy of the AR run, at a learning rate of 1e-12: its weights stay its start
    shutil.copytree(out / "runs" / "ar", tmp_path / "runs" / "ar")
    args = a2d.parse(argv(tmp_path, corpus))
    args.overrides.append("optim.lr=1e-12")
    adapted = load(a2d.train_stage("adapted", args)["run_dir"]).model
    assert adapted.config.shift and adapted.config.block_size == 4
    start = build_network("block_diffusion", adapted.config, mask_id=adapted.mask_id)
    expected = adapted_weights(load(models["ar"]["run_dir"]).model, start)
    for name, weight in adapted.state_dict().items():
        torch.testing.assert_close(weight, expected[name], rtol=0, atol=1e-9, msg=name)
    assert load(models["scratch"]["run_dir"]).model.vocab_embed.weight.shape[0] == adapted.config.vocab_size  # no BOS


def test_the_ratios_are_those_of_the_scored_numbers(result):
    _, _, report = result
    bits = {name: entry["heldout"]["bits_per_char"] for name, entry in report["models"].items()}
    summary = report["summary"]
    assert summary["ar_exact_bits_per_char"] == bits["ar"]
    assert summary["adapted_over_scratch"] == pytest.approx(bits["adapted"] / bits["scratch"], rel=1e-12)
    assert summary["adapted_over_ar"] == pytest.approx(bits["adapted"] / bits["ar"], rel=1e-12)
    assert summary["target_adapted_below_scratch"] == (bits["adapted"] < bits["scratch"])
    models = report["models"]
    # one backbone: the AR and from-scratch steps cost the same, a block step about twice as much
    assert models["ar"]["flops_per_token"] == models["scratch"]["flops_per_token"]
    assert 2 <= models["adapted"]["flops_per_token"] / models["scratch"]["flops_per_token"] <= 2.3
    assert models["scratch"]["train_flops"] == models["scratch"]["flops_per_token"] * 14 * 4 * 32
    assert summary["flops_adapted_over_scratch"] == pytest.approx(1.0, abs=0.1)
    for key in ("date", "machine", "torch", "commands"):
        assert report[key]
    assert (Path(result[0]) / "a2d.png").stat().st_size > 10_000


def test_stages_run_apart_make_the_same_report(result, tmp_path):
    out, corpus, report = result
    apart = tmp_path / "apart"
    for stage in ("ar", "scratch"):
        assert a2d.main(argv(apart, corpus, "--stage", stage)) == 0
        assert not (apart / "a2d.json").exists()  # no report before all three are in
    assert a2d.main(argv(apart, corpus, "--stage", "adapted")) == 0
    merged = json.loads((apart / "a2d.json").read_text())
    for key in ("ar_exact_bits_per_char", "adapted_bound_bits_per_char", "scratch_bound_bits_per_char"):
        assert merged["summary"][key] == pytest.approx(report["summary"][key], rel=1e-6), key
    (apart / "ar.json").write_text((apart / "ar.json").read_text().replace('"num_t": 2', '"num_t": 3'))
    with pytest.raises(SystemExit, match="different settings"):
        a2d.report(a2d.parse(argv(apart, corpus)))
