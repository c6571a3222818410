"""What ``test_plan_fsdp_independent.py`` compares with the plan: under ``torchrun --nproc_per_node=N``, each case's
network sharded by the trainer (``step.new_state`` with ``train.parallel=fsdp``), one optimizer step and a backward
taken, and the bytes of this rank's local shards of the parameters, gradients, AdamW state and EMA written to
``OUT/rank<R>.json``. Usage: ``plan_fsdp_worker.py OUT NUM_TOKENS CASE=PRESET:OVERRIDE,... ...``."""

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from scorediff.builders import build_model, build_objective
from scorediff.config import load_config
from scorediff.training.distributed import DistInfo
from scorediff.training.fsdp import local, state_bytes
from scorediff.training.step import new_state, train_step


def measure(preset: str, overrides: list[str], num_tokens: int, info: DistInfo) -> dict:
    config = load_config(preset, [*overrides, "train.parallel=fsdp", "train.compile=false", "train.bf16=false"])
    objective = build_objective(config, num_tokens)
    torch.manual_seed(0)
    state = new_state(config, objective, build_model(config, objective), torch.device("cpu"), info)
    generator = torch.Generator().manual_seed(1)  # the same rows on every rank: only the shapes matter here
    x_0 = torch.randint(0, num_tokens, (2, config.model.seq_len), generator=generator)
    train_step(state, objective.draw(x_0, generator))
    state.objective.loss(state.network, objective.draw(x_0, generator)).mean().backward()
    measured = state_bytes(state.model, state.optimizer)
    measured["ema"] = sum(local(t).numel() * local(t).element_size() for t in state.ema.shadow.values())
    measured["sharded"] = all(hasattr(p, "to_local") for p in state.model.parameters())
    return measured


def main() -> None:
    out, num_tokens, cases = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    dist.init_process_group("gloo")
    info = DistInfo(rank=dist.get_rank(), local_rank=dist.get_rank(), world_size=dist.get_world_size())
    report = {}
    for case in cases:
        name, _, spec = case.partition("=")
        preset, _, overrides = spec.partition(":")
        report[name] = measure(preset, overrides.split(",") if overrides else [], num_tokens, info)
    (out / f"rank{os.environ['RANK']}.json").write_text(json.dumps(report))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
