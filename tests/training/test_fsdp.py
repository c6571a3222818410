"""FSDP2 on 2 gloo processes against 1 process: equal losses and gradient norms for both backbones and both
objectives, half the state per process, sharded checkpoints that survive a failed save and resume at 1 or 2
processes, the whole export that loaders read, and the refusals. The runs are made by fsdp_worker.py, once per
world size (two launches for the whole module)."""

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from launch import launch, torchrun
from safetensors.torch import load_file

import scorediff
import scorediff.training
from scorediff.checkpoint import CheckpointError
from scorediff.cli import main
from scorediff.config import ConfigError
from scorediff.data.tokenizers import load_tokenizer
from scorediff.training import sharded
from scorediff.training.distributed import DistInfo
from scorediff.training.rundir import config_of_run
from scorediff.training.setup import build, check_resume

WORKER = Path(__file__).with_name("fsdp_worker.py")
CASES = ("dit-diffusion", "dit-ar", "llama-diffusion", "llama-ar", "llama-block")


@pytest.fixture(scope="module")
def runs(corpus, tmp_path_factory):
    """The worker's output folder, after its 2-process (fsdp) phase and then its 1-process (ddp) phase."""
    out = tmp_path_factory.mktemp("fsdp")
    launch([*torchrun(2), str(WORKER), str(out), str(corpus), "pair"], out)
    launch([sys.executable, str(WORKER), str(out), str(corpus), "one"], out)
    return out


def metrics(run_dir: Path) -> dict[int, dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in records if "loss_nats_per_token" in r}


def report(runs: Path, phase: str) -> dict:
    return json.loads((runs / f"{phase}.json").read_text())


@pytest.mark.parametrize("case", CASES)
def test_two_sharded_processes_match_one(runs, case):
    pair, one = metrics(runs / "runs" / f"{case}-pair"), metrics(runs / "runs" / f"{case}-one")
    assert sorted(pair) == sorted(one) == list(range(1, 21))
    for step in one:
        for key in ("loss_nats_per_token", "grad_norm"):  # the clipped norm of sharded gradients is the whole one
            assert pair[step][key] == pytest.approx(one[step][key], rel=2e-6), (step, key)
    drop = 0.1 if case == "llama-block" else 0.5  # a block bound's loss falls more slowly (4.50 to 4.38 here)
    assert one[20]["loss_nats_per_token"] < one[1]["loss_nats_per_token"] - drop  # it trains
    saved = json.loads((runs / "runs" / f"{case}-pair" / "config.json").read_text())["train"]
    assert saved["parallel"] == "fsdp"
    if case == "llama-diffusion":  # 2 ranks x 2 micro-batches of 2, blocks recomputed in the backward pass
        assert (saved["grad_accum"], saved["activation_checkpointing"]) == (2, True)


def test_a_compiled_sharded_run_matches_the_eager_one(runs):
    """``train.compile`` on a sharded network (torch.compile over FSDP2's hooks): the eager 2-process run's losses
    and gradient norms to 1e-5 (inductor fuses and reorders float32 sums; measured here: at most 1.7e-7)."""
    compiled, eager = metrics(runs / "runs" / "compiled"), metrics(runs / "runs" / "dit-diffusion-pair")
    assert json.loads((runs / "runs" / "compiled" / "config.json").read_text())["train"]["compile"] is True
    assert sorted(compiled) == sorted(eager) == list(range(1, 21))
    for step in eager:
        for key in ("loss_nats_per_token", "grad_norm"):
            assert compiled[step][key] == pytest.approx(eager[step][key], rel=1e-5), (step, key)


def test_a_sharded_run_starts_from_whole_weights(runs):
    pair, one = metrics(runs / "runs" / "init-pair"), metrics(runs / "runs" / "init-one")
    for step in one:
        assert pair[step]["loss_nats_per_token"] == pytest.approx(one[step]["loss_nats_per_token"], rel=2e-6), step
    scratch = metrics(runs / "runs" / "dit-diffusion-one")
    assert one[1]["loss_nats_per_token"] < scratch[1]["loss_nats_per_token"] - 1.0  # it did start from them


def test_bf16_computes_in_bf16_and_keeps_float32_weights(runs):
    mixed, exact = metrics(runs / "runs" / "bf16"), metrics(runs / "runs" / "dit-diffusion-one")
    gaps = [abs(mixed[s]["loss_nats_per_token"] / exact[s]["loss_nats_per_token"] - 1) for s in exact]
    assert max(gaps) < 0.02 and max(gaps) > 1e-6  # bf16 rounding, not float32's
    weights = load_file(runs / "runs" / "bf16" / "checkpoints" / "step_00000020" / "model.safetensors")
    assert {w.dtype for w in weights.values()} == {torch.float32}


def test_each_process_holds_half_the_state(runs):
    pair, one = report(runs, "pair")["memory"], report(runs, "one")["memory"]
    for key in ("parameters", "gradients", "optimizer"):
        assert 0.45 <= pair[key] / one[key] <= 0.55, key
    assert one["optimizer"] >= 2 * one["parameters"]  # AdamW's two moments


def test_a_failed_save_resumes_from_the_last_complete_checkpoint(runs):
    pair = report(runs, "pair")
    assert pair["failure"].startswith("killed while saving into .tmp-")
    assert pair["checkpoints"] == [".tmp-killed", "step_00000005"]  # nothing of step 10 but debris
    uninterrupted = metrics(runs / "runs" / "dit-diffusion-pair")
    for name, world_size in (("resumed", 2), ("resumed-one", 1)):
        resumed = runs / "runs" / name
        again = metrics(resumed)
        for step in range(6, 21):
            assert again[step]["loss_nats_per_token"] == pytest.approx(
                uninterrupted[step]["loss_nats_per_token"], rel=2e-6
            ), (name, step)
        names = sorted(p.name for p in (resumed / "checkpoints").iterdir())
        assert names == [f"step_{s:08d}" for s in (5, 10, 15, 20)], names  # the debris was cleared
        state = json.loads((resumed / "checkpoints" / "step_00000020" / "trainer_state.json").read_text())
        assert state["world_size"] == world_size


def test_the_last_checkpoint_is_exported_whole(runs):
    run_dir = runs / "runs" / "dit-diffusion-pair"
    last = run_dir / "checkpoints" / "step_00000020"
    whole = load_file(last / "model.safetensors")
    reference = load_file(runs / "runs" / "dit-diffusion-one" / "checkpoints" / "step_00000020" / "model.safetensors")
    assert whole.keys() == reference.keys()
    for name, weight in reference.items():
        torch.testing.assert_close(whole[name], weight, rtol=1e-4, atol=1e-5, msg=name)
    loaded = scorediff.load(run_dir)
    assert loaded.path == last and loaded.weights == "ema"
    assert loaded.step == 20
    with pytest.raises(CheckpointError, match="holds training shards only"):
        scorediff.load(run_dir / "checkpoints" / "step_00000015")


def test_two_processes_refuse_a_batch_they_do_not_divide(runs):
    assert (
        report(runs, "pair")["odd_batch"] == "train.batch_size=7 must be divisible by world_size * grad_accum = 2 * 1"
    )
    assert not (runs / "runs" / "odd").exists()


def test_fsdp_on_one_process_is_refused(micro_config, tmp_path, capsys):
    _, path = micro_config()
    assert main(["train", "--config", str(path), "--train.parallel=fsdp"]) == 2
    err = capsys.readouterr().err.strip()
    assert "train.parallel=fsdp shards the model over processes" in err and "\n" not in err
    assert not (tmp_path / "runs").exists()


def snapshot(folder: Path) -> dict:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_a_sharded_run_refuses_another_width(runs, capsys):
    run_dir = runs / "runs" / "llama-ar-pair"
    before = snapshot(run_dir)
    code = main(["train", "--resume", str(run_dir), "--train.parallel=ddp", "--model.hidden_size=48", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "model.hidden_size differs" in err and "\n" not in err
    assert snapshot(run_dir) == before  # nothing written


def test_shards_of_another_shape_are_refused(runs):
    checkpoint = runs / "runs" / "llama-ar-pair" / "checkpoints" / "step_00000010"
    config = config_of_run(checkpoint)
    config = replace(config, model=replace(config.model, hidden_size=48), train=replace(config.train, parallel="ddp"))
    state = build(config, load_tokenizer(checkpoint), torch.device("cpu"), DistInfo())
    shapes = r"its vocab_embed.weight is of shape \(77, 32\), this run's network has \(77, 48\)"
    with pytest.raises(CheckpointError, match=shapes):
        sharded.check_shapes(state, checkpoint)


def test_fsdp_refuses_a_whole_weights_checkpoint(runs):
    checkpoint = runs / "runs" / "dit-diffusion-one" / "checkpoints" / "step_00000020"
    config = config_of_run(checkpoint)
    state = SimpleNamespace(config=replace(config, train=replace(config.train, parallel="fsdp")))
    with pytest.raises(ConfigError, match="was written by a ddp run"):
        check_resume(state, checkpoint, checkpoint.parents[1])


def test_a_sharded_checkpoint_is_exported_on_demand(runs, tmp_path):
    pair, one = (
        runs / "runs" / "dit-diffusion-pair" / "checkpoints",
        runs / "runs" / "dit-diffusion-one" / "checkpoints",
    )
    for step in (15, 20):  # 15: shards only; 20: exported at the end of the run, which export must reproduce
        copy = tmp_path / f"step_{step:08d}"
        shutil.copytree(pair / copy.name, copy, ignore=shutil.ignore_patterns("*.safetensors"))
        assert scorediff.training.export(copy) == copy
        for name in ("model.safetensors", "ema.safetensors"):
            exported = load_file(copy / name)
            reference = load_file(one / copy.name / name)
            assert exported.keys() == reference.keys()
            for key, value in reference.items():
                torch.testing.assert_close(exported[key], value, rtol=1e-4, atol=1e-5, msg=key)
            if step == 20:
                assert all(torch.equal(exported[k], v) for k, v in load_file(pair / copy.name / name).items())
        assert scorediff.load(copy).step == step
    with pytest.raises(CheckpointError, match="cannot be read"):
        scorediff.training.export(one / "step_00000020")
