"""LoRA (``train.lora_rank``): a tiny llama AR run, initialised from a trained one, learns rank-4 adapters only."""

import dataclasses
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from launch import launch, torchrun
from micro import micro_values
from safetensors.torch import load_file

import scorediff
from scorediff.checkpoint import CheckpointError
from scorediff.cli import main
from scorediff.config import ConfigError, load_config
from scorediff.sampling.options import SamplingOptions
from scorediff.training import train
from scorediff.training.distributed import DistInfo
from scorediff.training.setup import build, initialise, prepare_data, resolve_from_data
from scorediff.training.step import draw_batch, train_step

sys.path.insert(0, str(Path(__file__).parents[1] / "cli"))

from cli_run import assert_user_error  # noqa: E402

RANK, ALPHA = 4, 8.0
CPU = torch.device("cpu")
ADAPTED = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def with_train(config, **train):
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **train))


def losses(run_dir: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss_nats_per_token"] for r in records if "loss_nats_per_token" in r}


@pytest.fixture(scope="module")
def parent(corpus, tmp_path_factory):
    """A tiny llama AR run trained 4 steps, and the config of a LoRA child initialised from it."""
    root = tmp_path_factory.mktemp("lora")
    values = micro_values(
        corpus, root / "cache", "autoregressive", out_dir=str(root / "runs"), run_name="parent", max_steps=4,
        save_every=0, bf16=False,
    )  # fmt: skip
    values["model"]["arch"] = "llama"
    path = root / "parent.yaml"
    path.write_text(yaml.safe_dump(values))
    run = train(load_config(str(path)), progress=False)
    child = with_train(
        load_config(str(path)), run_name="child", init=str(run.checkpoint), lora_rank=RANK, lora_alpha=ALPHA,
        max_steps=6, save_every=3,
    )  # fmt: skip
    return SimpleNamespace(run=run, config=child, yaml=path, root=root)


def lora_state(config):
    """The training state a LoRA run starts from, built as ``train`` builds it."""
    from scorediff.training.lora import attach

    data = prepare_data(config, DistInfo(), None)
    config = resolve_from_data(config, data)
    state = build(config, data.tokenizer, CPU, DistInfo())
    if config.train.init:
        initialise(state, config.train.init)
    return attach(state, CPU), data


def test_only_the_adapters_train(parent):
    pytest.importorskip("peft")
    state, data = lora_state(parent.config)
    before = {name: p.detach().clone() for name, p in state.model.named_parameters()}
    adapters = {name for name in before if ".lora_" in name}
    assert {name.split(".")[-4] for name in adapters} == set(ADAPTED)  # both of each of the 7 linears
    optimised = {id(p) for group in state.optimizer.param_groups for p in group["params"]}
    assert optimised == {id(p) for name, p in state.model.named_parameters() if name in adapters}
    for _ in range(3):
        train_step(state, draw_batch(state, data.train, CPU))
    after = dict(state.model.named_parameters())
    for name, value in before.items():
        if name in adapters:
            assert not torch.equal(after[name], value), name
        else:
            assert torch.equal(after[name], value), name  # bit-identical


def test_checkpoints_hold_the_merged_weights(parent, capsys):
    pytest.importorskip("peft")
    child = train(parent.config, progress=False)
    header = next(line for line in capsys.readouterr().out.splitlines() if "model:" in line)
    plain = scorediff.load(parent.run.checkpoint).model
    base = plain.state_dict()  # what the run was initialised with
    targets = [name for name in base if name.split(".")[-2] in ADAPTED]
    trainable = sum(RANK * sum(base[name].shape) for name in targets)  # A (r, in) and B (out, r)
    total = sum(p.numel() for p in plain.parameters()) + trainable
    assert f"{total:,} parameters, {trainable:,} trainable" in header
    adapters = load_file(child.checkpoint / "lora.safetensors")
    for weights, prefix in (("model.safetensors", ""), ("ema.safetensors", "ema.")):
        merged = load_file(child.checkpoint / weights)
        assert set(merged) == set(base)  # the ordinary layout
        for name, value in base.items():
            if name not in targets:
                assert torch.equal(merged[name], value), name
                continue
            layer = name.removesuffix(".weight")
            a = adapters[f"{prefix}{layer}.lora_A.default.weight"].double()
            b = adapters[f"{prefix}{layer}.lora_B.default.weight"].double()
            expected = value.double() + ALPHA / RANK * (b @ a)
            torch.testing.assert_close(merged[name].double(), expected, rtol=0, atol=1e-6)
            assert (b @ a).abs().max() > 1e-4  # the update is there: the test can fail


def test_resume_reproduces_the_next_losses(parent):
    pytest.importorskip("peft")
    straight = train(with_train(parent.config, run_name="straight"), progress=False)
    split = with_train(parent.config, run_name="split")
    train(split, until_step=3, progress=False)
    resumed = train(split, resume=True, progress=False)
    assert resumed.step == 6
    assert [losses(straight.run_dir)[s] for s in (4, 5, 6)] == [losses(resumed.run_dir)[s] for s in (4, 5, 6)]
    for name in ("model.safetensors", "ema.safetensors", "lora.safetensors"):
        a, b = load_file(straight.checkpoint / name), load_file(resumed.checkpoint / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_a_resume_over_other_frozen_weights_is_refused(parent, tmp_path):
    pytest.importorskip("peft")
    init = tmp_path / "init"
    shutil.copytree(parent.run.checkpoint, init)
    config = with_train(parent.config, run_name="moved", init=str(init), max_steps=2, save_every=1)
    train(config, until_step=1, progress=False)
    other = train(
        with_train(config, run_name="other", lora_rank=0, lora_alpha=16.0, init="", max_steps=1), progress=False
    )
    for name in ("model.safetensors", "ema.safetensors"):  # the same --init path now holds another model
        shutil.copy(other.checkpoint / name, init / name)
    with pytest.raises(CheckpointError, match=r"its frozen weights, rebuilt from train.init=.* are not those it"):
        train(config, resume=True, progress=False)


def test_a_lora_run_loads_and_samples_like_any_run(parent):
    pytest.importorskip("peft")
    child = train(with_train(parent.config, run_name="sampled", max_steps=3), progress=False)
    loaded = scorediff.load(child.checkpoint)
    merged = load_file(child.checkpoint / "ema.safetensors")
    assert all(torch.equal(value, merged[name]) for name, value in loaded.model.state_dict().items() if name in merged)
    drawn = loaded.objective.sample(
        loaded.model, (2, 16), SamplingOptions(), generator=torch.Generator().manual_seed(0)
    )
    assert drawn.tokens.shape == (2, 16)
    assert 0 <= int(drawn.tokens.min()) and int(drawn.tokens.max()) < loaded.model.config.vocab_size


def test_the_dit_adapts_too_and_bad_targets_are_refused(corpus, tmp_path):
    pytest.importorskip("peft")
    values = micro_values(corpus, tmp_path / "cache", "diffusion", out_dir=str(tmp_path / "runs"), lora_rank=2)
    path = tmp_path / "dit.yaml"
    path.write_text(yaml.safe_dump(values))
    state, _ = lora_state(load_config(str(path)))
    adapted = {name.split(".lora_A")[0] for name, _ in state.model.named_parameters() if ".lora_A" in name}
    assert adapted == {"blocks.0.attn_qkv", "blocks.0.attn_out", "blocks.0.mlp.0", "blocks.0.mlp.2"}
    with pytest.raises(ConfigError, match=r"^train.lora_targets: vocab_embed is a Embedding; LoRA here adapts linear"):
        lora_state(with_train(load_config(str(path)), lora_targets="vocab_embed"))
    with pytest.raises(ConfigError, match=r"^train.lora_targets='nowhere' names no layer of this network$"):
        lora_state(with_train(load_config(str(path)), lora_targets="nowhere"))


def test_without_peft_a_lora_run_is_one_line_and_writes_nothing(parent, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "peft", None)  # ``import peft`` now raises ImportError
    no_peft = r"^train.lora_rank=4 trains LoRA adapters through peft, which is not installed: "
    no_peft += r"pip install 'scorediff\[lora\]'$"
    with pytest.raises(ConfigError, match=no_peft):
        train(with_train(parent.config, run_name="no-peft"), progress=False)
    argv = ["train", "--config", str(parent.yaml), "--name", "no-peft-cli", "--out", str(parent.root / "runs")]
    argv += ["--init", str(parent.run.checkpoint), "--train.lora_rank=4"]
    assert_user_error(capsys, argv, "^scorediff: error: " + no_peft.removeprefix("^"))
    assert not (parent.root / "runs" / "no-peft").exists() and not (parent.root / "runs" / "no-peft-cli").exists()


def test_two_processes_train_the_same_adapters_as_one(parent):
    """LoRA under DDP (gloo, 2 ranks x 2 micro-batches against 1 process, the same global batch of 8): the
    adapters, and so the merged weights, are one process's to float32 rounding."""
    pytest.importorskip("peft")
    command = ["-m", "scorediff", "train", "--config", str(parent.yaml), "--quiet", "--num-samples", "0",
               f"--train.init={parent.run.checkpoint}", f"--train.lora_rank={RANK}", f"--train.lora_alpha={ALPHA}",
               "--train.max_steps=4", "--train.save_every=4", f"--train.out_dir={parent.root / 'ddp'}"]  # fmt: skip
    launch([sys.executable, *command, "--name", "one"], parent.root)
    launch([*torchrun(2), *command, "--name", "two", "--train.grad_accum=2"], parent.root)
    step = Path("checkpoints") / "step_00000004"
    one, two = (parent.root / "ddp" / name / step for name in ("one", "two"))
    for weights in ("lora.safetensors", "model.safetensors"):
        expected, got = load_file(one / weights), load_file(two / weights)
        assert set(got) == set(expected), weights
        for name, value in expected.items():
            torch.testing.assert_close(got[name], value, rtol=1e-4, atol=1e-6, msg=name)
    moved = load_file(one / "lora.safetensors")
    assert max(float(v.abs().max()) for k, v in moved.items() if "lora_B" in k) > 1e-4  # B starts at zero


def test_two_sharded_processes_train_the_same_adapters_as_one(parent):
    """LoRA under FSDP (gloo, 2 ranks, the adapters sharded with their frozen weights) against 1 process, the same
    global batch: the merged weights of the last checkpoint, written whole, are one process's to float32 rounding;
    resumed from its sharded step-2 checkpoint, the 2-process run reaches the same step-4 weights; and
    ``scorediff export`` of the step-2 shards writes that checkpoint's merged weights, which load like any run."""
    pytest.importorskip("peft")
    command = ["-m", "scorediff", "train", "--config", str(parent.yaml), "--quiet", "--num-samples", "0",
               f"--train.init={parent.run.checkpoint}", f"--train.lora_rank={RANK}", f"--train.lora_alpha={ALPHA}",
               "--train.max_steps=4", "--train.save_every=2", "--train.keep_last=3",
               f"--train.out_dir={parent.root / 'fsdp'}"]  # fmt: skip
    launch([sys.executable, *command, "--name", "one"], parent.root)
    launch([*torchrun(2), *command, "--name", "two", "--train.parallel=fsdp"], parent.root)
    one, two = parent.root / "fsdp" / "one" / "checkpoints", parent.root / "fsdp" / "two" / "checkpoints"
    assert (two / "step_00000002" / "sharded").is_dir() and not (two / "step_00000004" / "lora.safetensors").exists()
    expected, got = (
        load_file(one / "step_00000004" / "model.safetensors"),
        load_file(two / "step_00000004" / "model.safetensors"),
    )
    assert set(got) == set(expected) and not any("lora" in name for name in got)
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=1e-4, atol=1e-6, msg=name)
    assert losses(one.parent) == pytest.approx(losses(two.parent), rel=1e-5)
    shutil.rmtree(two / "step_00000004")
    resume = ["-m", "scorediff", "train", "--resume", str(two.parent), "--quiet", "--num-samples", "0"]
    launch([*torchrun(2), *resume], parent.root)
    resumed = load_file(two / "step_00000004" / "model.safetensors")
    for name, value in expected.items():
        torch.testing.assert_close(resumed[name], value, rtol=1e-4, atol=1e-6, msg=name)
    assert main(["export", str(two / "step_00000002")]) == 0
    exported = load_file(two / "step_00000002" / "model.safetensors")
    for name, value in load_file(one / "step_00000002" / "model.safetensors").items():
        torch.testing.assert_close(exported[name], value, rtol=1e-4, atol=1e-6, msg=name)
    assert (
        scorediff.load(two / "step_00000002").model.num_parameters()
        == scorediff.load(one.parent).model.num_parameters()
    )
