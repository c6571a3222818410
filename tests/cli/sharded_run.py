"""Writes a micro FSDP run's checkpoint (shards and whole weights) after one step, in a one-process gloo group:
``python sharded_run.py RUN_DIR PORT``. The sharding is the trainer's own (``step.new_state``); ``fsdp.check_parallel``,
which wants two processes for a real run, is not called."""

import dataclasses
import os
import sys

import torch
import torch.distributed as dist

from scorediff.builders import build_model, build_objective
from scorediff.config import load_config
from scorediff.data.tokenizers import ByteTokenizer
from scorediff.training import sharded
from scorediff.training.distributed import DistInfo
from scorediff.training.step import new_state, train_step

MICRO = ["model.hidden_size=32", "model.n_heads=4", "model.n_blocks=2", "model.seq_len=16", "model.cond_dim=16"]

os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[2], RANK="0", WORLD_SIZE="1")
dist.init_process_group("gloo", rank=0, world_size=1)
config = load_config("tiny", [*MICRO, "train.parallel=fsdp", "train.batch_size=2", "train.bf16=false"])
tokenizer = ByteTokenizer()
objective = build_objective(config, tokenizer.vocab_size)
torch.manual_seed(0)
model = build_model(config, objective)
state = new_state(dataclasses.replace(config, model=model.config), objective, model, torch.device("cpu"), DistInfo())
x_0 = torch.randint(0, tokenizer.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
train_step(state, objective.draw(x_0, torch.Generator().manual_seed(1)))
sharded.save(state, sys.argv[1], tokenizer, {}, export=True)
dist.destroy_process_group()
