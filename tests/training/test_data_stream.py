"""The data a run trains on is a function of (train.seed, step): the position in the data is the step, which the
checkpoint holds, so a resumed run draws exactly the windows of an uninterrupted one, and N processes split
each step's global batch between them."""

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch
from launch import launch, torchrun

import scorediff.training.trainer as trainer
from scorediff.data import TokenWindows
from scorediff.training import train
from scorediff.training.optim import step_seed

WORKER = str(Path(__file__).with_name("stream_worker.py"))


def recorded_run(monkeypatch, config, **kwargs):
    """``train(config)``, returning ``{step: the batch draw_batch gave}``."""
    drawn = {}

    def recording(state, windows, device):
        batch = trainer_draw(state, windows, device)
        drawn[state.step] = {name: value.clone() for name, value in batch.items()}
        return batch

    trainer_draw = trainer.draw_batch
    monkeypatch.setattr(trainer, "draw_batch", recording)
    result = train(config, progress=False, **kwargs)
    monkeypatch.setattr(trainer, "draw_batch", trainer_draw)
    return result, drawn


def named(config, name, **train_fields):
    return dataclasses.replace(config, train=dataclasses.replace(config.train, run_name=name, **train_fields))


def test_a_resumed_run_draws_the_windows_of_an_uninterrupted_one(micro_config, monkeypatch):
    config, _ = micro_config(grad_accum=2)
    straight, uninterrupted = recorded_run(monkeypatch, named(config, "straight"))
    first, before = recorded_run(monkeypatch, named(config, "split"), until_step=3)
    state = json.loads((first.checkpoint / "trainer_state.json").read_text())
    assert state["step"] == 3  # the data position the checkpoint holds
    second, after = recorded_run(monkeypatch, named(config, "split"), resume=True)
    assert sorted(before) == [0, 1, 2] and sorted(after) == [3, 4, 5]
    for step, batch in {**before, **after}.items():  # neither repeated nor skipped: every field, every step
        assert batch.keys() == uninterrupted[step].keys()
        assert all(torch.equal(batch[name], uninterrupted[step][name]) for name in batch), step
    assert not torch.equal(uninterrupted[3]["x_0"], uninterrupted[4]["x_0"])
    # re-derived from the contract: step s reads the windows at offsets randint(starts) from step_seed(seed, s, 0)
    shards = next(p for p in Path(config.data.cache_dir).iterdir() if (p / "meta.json").exists())
    windows = TokenWindows(shards, "train", config.model.seq_len)
    for step, batch in uninterrupted.items():
        generator = torch.Generator().manual_seed(step_seed(config.train.seed, step, 0))
        starts = torch.randint(0, len(windows.tokens) - config.model.seq_len + 1, (8,), generator=generator).numpy()
        expected = windows.tokens[starts[:, None] + np.arange(config.model.seq_len)].astype(np.int64)
        assert np.array_equal(batch["x_0"].numpy(), expected), step


def test_two_processes_split_each_global_batch_between_them(micro_config, tmp_path):
    """2 gloo ranks x 2 micro-batches against 1 process: what each rank's loss is taken on, micro-batch by
    micro-batch, is its own half of the 1-process global batch, in order."""
    _, path = micro_config("diffusion")
    command = ["train", "--config", str(path), "--quiet", "--num-samples", "0", "--train.preview_samples=0"]
    single, pair = tmp_path / "single", tmp_path / "pair"
    single.mkdir(), pair.mkdir()
    launch([sys.executable, WORKER, str(single), *command, "--name", "single"], tmp_path)
    launch([*torchrun(2), WORKER, str(pair), *command, "--name", "pair", "--train.grad_accum=2"], tmp_path)
    whole = torch.load(single / "rank0.pt")
    ranks = [torch.load(pair / f"rank{r}.pt") for r in (0, 1)]
    assert len(whole) == 6 and [len(r) for r in ranks] == [12, 12]  # 6 steps; 2 micro-batches a step
    for step, batch in enumerate(whole):
        assert batch.shape == (8, 32)
        halves = [torch.cat(r[2 * step : 2 * step + 2]) for r in ranks]  # a rank's micro-batches of this step
        assert all(part.shape == (2, 32) for r in ranks for part in r[2 * step : 2 * step + 2])
        assert torch.equal(halves[0], batch[:4]) and torch.equal(halves[1], batch[4:]), step
