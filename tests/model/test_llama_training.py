"""A llama network trains, saves, loads and resumes like a DiT: a resumed run reproduces the next losses, the
checkpoint loads into the llama class with its weights, two DDP processes reach one process's weights, and the
compiled network computes what the eager one does."""

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from micro import corpus_head, micro_values
from safetensors.torch import load_file

import scorediff
from scorediff.config import load_config
from scorediff.model import (
    LlamaBlockDiffusionTransformer,
    LlamaCausalTransformer,
    LlamaTransformer,
    ModelConfig,
    build_network,
)
from scorediff.training import train

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))

from launch import launch, torchrun  # noqa: E402

NETWORKS = {"diffusion": LlamaTransformer, "autoregressive": LlamaCausalTransformer,
            "block": LlamaBlockDiffusionTransformer}  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return corpus_head(tmp_path_factory.mktemp("corpus") / "shakespeare_head.txt", 50_000)


def llama_config(corpus, tmp_path, objective: str, run_name: str):
    values = micro_values(corpus, tmp_path / "cache", "diffusion" if objective == "block" else objective,
                          out_dir=str(tmp_path / "runs"), run_name=run_name)  # fmt: skip
    # grouped-query attention and tied embeddings, so that the checkpoint holds the shapes a converter would give
    values["model"].update(arch="llama", n_kv_heads=1, tie_embeddings=True)
    if objective == "diffusion":
        values["model"]["time_conditioning"] = False
        values["diffusion"] = {"mask_count": True}
    if objective == "block":
        values["model"].update(block_size=8, time_conditioning=False)
        values["diffusion"] = {"mask_count": True}
    path = tmp_path / f"{run_name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return load_config(str(path))


def losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss_nats_per_token"] for r in records if "loss_nats_per_token" in r}


@pytest.mark.parametrize("objective", sorted(NETWORKS))
def test_a_resumed_llama_run_reproduces_the_uninterrupted_one(corpus, tmp_path, objective):
    straight = train(llama_config(corpus, tmp_path, objective, "straight"), progress=False)
    split = llama_config(corpus, tmp_path, objective, "split")
    assert train(split, until_step=3, progress=False).step == 3
    resumed = train(split, resume=True, progress=False)
    assert resumed.step == straight.step == 6
    uninterrupted, again = losses(straight.run_dir), losses(resumed.run_dir)
    assert [uninterrupted[s] for s in (4, 5, 6)] == [again[s] for s in (4, 5, 6)]
    assert uninterrupted[6] < uninterrupted[1]  # it learns

    loaded = scorediff.load(resumed.run_dir)
    assert type(loaded.model) is NETWORKS[objective] and loaded.model.config.arch == "llama"
    ema = load_file(resumed.checkpoint / "ema.safetensors")
    assert "output_layer.linear.weight" not in ema  # tied: saved once, as the embedding
    assert ema["blocks.0.self_attn.k_proj.weight"].shape == (16, 32)  # one key head of 16
    state = loaded.model.state_dict()
    assert state.keys() == ema.keys() and all(torch.equal(state[k], ema[k]) for k in ema)
    straight_ema = load_file(straight.checkpoint / "ema.safetensors")
    assert all(torch.equal(straight_ema[k], ema[k]) for k in ema)


def test_the_compiled_network_computes_the_eager_one():
    # what train.compile runs: inductor on the CPU (a C++ compiler; the tiny presets turn it on)
    config = ModelConfig(arch="llama", vocab_size=12, hidden_size=32, cond_dim=16, n_blocks=2, n_heads=4,
                         n_kv_heads=2, seq_len=16, qk_norm=True)  # fmt: skip
    torch.manual_seed(0)
    network = build_network("diffusion", config, mask_id=11).eval()
    x_t = torch.randint(0, 12, (2, 16), generator=torch.Generator().manual_seed(0))
    sigma_bar = torch.tensor([0.5, 2.0])
    compiled = torch.compile(network)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x_t, sigma_bar), network(x_t, sigma_bar), rtol=1e-5, atol=1e-5)


def test_two_processes_match_one_under_ddp(corpus, tmp_path):
    # tied embeddings and grouped keys and values under DistributedDataParallel: the shared weight gets one gradient
    path = tmp_path / "micro.yaml"
    path.write_text(yaml.safe_dump(llama_config(corpus, tmp_path, "diffusion", "run").to_dict()))
    command = ["-m", "scorediff", "train", "--config", str(path), "--quiet", "--num-samples", "1",
               "--train.max_steps=4", "--train.save_every=4", "--train.bf16=false"]  # fmt: skip
    launch([sys.executable, *command, "--name", "single"], tmp_path)
    # 8 sequences = 2 ranks x 2 micro-steps x 2
    launch([*torchrun(2), *command, "--name", "pair", "--train.grad_accum=2"], tmp_path)
    runs = tmp_path / "runs"
    single, pair = (load_file(runs / name / "checkpoints" / "step_00000004" / "model.safetensors")
                    for name in ("single", "pair"))  # fmt: skip
    assert single.keys() == pair.keys() and "output_layer.linear.weight" not in single
    for name, weight in single.items():
        torch.testing.assert_close(pair[name], weight, rtol=1e-4, atol=1e-5, msg=name)
    assert '"world_size": 2' in (runs / "pair" / "checkpoints" / "step_00000004" / "trainer_state.json").read_text()
