"""What ``test_reshard_independent.py`` reads back: under ``torchrun --nproc_per_node=2``, a micro llama sharded by the
trainer takes 3 steps and writes a sharded checkpoint (``sharded.save``, with the whole export), and rank 0 saves
the whole tensors the two ranks hold at that moment, gathered here apart from the checkpoint code: the weights,
the EMA and AdamW's moments and step counts, by weight name (``OUT/whole.pt``). Then a fresh sharded state, of
other initial weights, is restored from the checkpoint at 2 ranks and gathered again (``OUT/restored_2.pt``).
Usage: ``reshard_worker.py OUT``."""

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from scorediff.builders import build_model, build_objective
from scorediff.config import load_config
from scorediff.data.tokenizers import ByteTokenizer
from scorediff.training import sharded
from scorediff.training.distributed import DistInfo
from scorediff.training.step import new_state, train_step

NUM_TOKENS = ByteTokenizer().vocab_size
WORKER_NAME = str(Path(__file__))
OVERRIDES = [
    "model.hidden_size=32", "model.n_heads=4", "model.n_kv_heads=2", "model.n_blocks=2", "model.seq_len=16",
    "train.parallel=fsdp", "train.batch_size=4", "train.bf16=false", "train.compile=false", "train.ema=0.5",
    "optim.warmup_steps=0",
]  # fmt: skip


def state_at(seed: int, info: DistInfo):
    config = load_config("tiny-llama", OVERRIDES)
    objective = build_objective(config, NUM_TOKENS)
    torch.manual_seed(seed)
    return new_state(config, objective, build_model(config, objective), torch.device("cpu"), info)


def whole_tensors(state) -> dict[str, torch.Tensor]:
    """Every rank's shards put together with ``full_tensor`` (a collective), by name: ``model.W``, ``ema.W``,
    ``optimizer.W.exp_avg`` / ``.exp_avg_sq`` / ``.step``."""
    out = {}
    for name, parameter in state.model.named_parameters():
        out[f"model.{name}"] = parameter.detach().full_tensor()
        out[f"ema.{name}"] = state.ema.shadow[name].full_tensor()
        for key, value in state.optimizer.state[parameter].items():
            out[f"optimizer.{name}.{key}"] = value.full_tensor() if hasattr(value, "full_tensor") else value.clone()
    return out


def main() -> None:
    out = Path(sys.argv[1])
    dist.init_process_group("gloo")
    info = DistInfo(rank=dist.get_rank(), local_rank=dist.get_rank(), world_size=dist.get_world_size())
    state = state_at(0, info)
    for step in range(3):
        generator = torch.Generator().manual_seed(10 + step)
        x_0 = torch.randint(0, NUM_TOKENS, (2, 16), generator=generator)  # this rank's rows: only shapes matter
        train_step(state, state.objective.draw(x_0, generator))
    sharded.save(state, out / "run", ByteTokenizer(), {"tokens_seen": 0, "elapsed_seconds": 0.0}, export=True)
    reference = whole_tensors(state)
    restored = state_at(1, info)
    checkpoint = out / "run" / "checkpoints" / "step_00000003"
    sharded.restore(restored, checkpoint)
    again = whole_tensors(restored)
    if info.is_main:
        torch.save(reference, out / "whole.pt")
        torch.save(again, out / "restored_2.pt")
    dist.destroy_process_group()
    assert os.environ["WORLD_SIZE"] == "2"


if __name__ == "__main__":
    main()
