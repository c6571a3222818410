"""Checkpoints hold everything, and a resumed run continues exactly as an uninterrupted one."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

import scorediff
from scorediff.config import ConfigError
from scorediff.training import train


def losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss_nats_per_token"] for r in records if "loss_nats_per_token" in r}


def rename(config, name):
    return dataclasses.replace(config, train=dataclasses.replace(config.train, run_name=name))


@pytest.mark.parametrize("objective", ["diffusion", "autoregressive", "block"])
def test_resume_reproduces_the_uninterrupted_run(micro_config, objective):
    config, _ = micro_config(objective)
    straight = train(rename(config, "straight"), progress=False)
    assert straight.step == 6 and straight.checkpoint.name == "step_00000006"

    first = train(rename(config, "split"), until_step=3, progress=False)
    assert first.step == 3
    second = train(rename(config, "split"), resume=True, progress=False)
    assert second.step == 6

    uninterrupted, resumed = losses(straight.run_dir), losses(second.run_dir)
    assert [uninterrupted[s] for s in (4, 5, 6)] == [resumed[s] for s in (4, 5, 6)]
    assert uninterrupted[6] < uninterrupted[1]  # it learns
    for name in ("model.safetensors", "ema.safetensors"):
        a, b = load_file(straight.checkpoint / name), load_file(second.checkpoint / name)
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_layout_and_load(micro_config):
    config, _ = micro_config(max_steps=9, keep_last=2)
    result = train(config, progress=False)
    checkpoints = sorted(p.name for p in (result.run_dir / "checkpoints").iterdir())
    assert checkpoints == ["step_00000006", "step_00000009"]  # keep_last=2 pruned step 3
    files = sorted(p.name for p in result.checkpoint.iterdir())
    assert files == sorted(
        [
            "config.json",
            "model.safetensors",
            "ema.safetensors",
            "tokenizer.json",
            "trainer_state.json",
            "trainer_state.safetensors",
        ]
    )
    state = json.loads((result.checkpoint / "trainer_state.json").read_text())
    assert state["step"] == 9 and state["tokens_seen"] == 9 * 8 * 32

    loaded = scorediff.load(result.run_dir)  # a run directory resolves to its latest checkpoint
    assert loaded.step == 9 and loaded.tokenizer.vocab_size == loaded.graph.num_tokens
    assert not loaded.model.training
    ema = load_file(result.checkpoint / "ema.safetensors")
    assert all(torch.equal(loaded.model.state_dict()[k], ema[k]) for k in ema)
    raw = scorediff.load(result.checkpoint, ema=False)
    assert not torch.equal(raw.model.vocab_embed.weight, loaded.model.vocab_embed.weight)
    text = loaded.tokenizer.decode(scorediff.sample(loaded.score_fn, loaded.graph, loaded.schedule, (1, 32), 4)[0])
    assert len(text) == 32


def test_resume_refuses_a_different_config(micro_config):
    config, _ = micro_config()
    train(config, until_step=3, progress=False)
    changed = dataclasses.replace(config, optim=dataclasses.replace(config.optim, lr=1.0))
    with pytest.raises(ConfigError, match=r"optim.lr differs from the run's config \(0.003 there, 1.0 now\)"):
        train(changed, resume=True, progress=False)
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        train(config, progress=False)


def test_resume_reads_a_run_saved_before_an_option_existed(micro_config):
    # a run saved by a version without optim.decay_fraction resumes with its default, the schedule it ran
    config, _ = micro_config()
    straight = train(rename(config, "straight"), progress=False)
    first = train(rename(config, "old"), until_step=3, progress=False)
    for path in (first.run_dir / "config.json", first.checkpoint / "config.json"):
        saved = json.loads(path.read_text())
        del saved["optim"]["decay_fraction"]
        path.write_text(json.dumps(saved))
    second = train(rename(config, "old"), resume=True, progress=False)
    assert second.step == 6
    assert [losses(straight.run_dir)[s] for s in (4, 5, 6)] == [losses(second.run_dir)[s] for s in (4, 5, 6)]
