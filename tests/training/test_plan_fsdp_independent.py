"""The plan's FSDP state figures against real FSDP2 shards: 3 gloo processes shard each network as the trainer does
(plan_fsdp_worker.py) and count the bytes of their local parameters, gradients, AdamW state and EMA after a step.
The existing plan test checks the FSDP figure against the plan's own formula restated (``ceil(rows / N)`` rows);
here ``fully_shard`` is the reference. Vocabulary rows (22), MLP widths and head rows that 3 does not divide make
the last rank's shards smaller than the others': the plan's figure, a per-GPU budget, is the largest rank's
(rank 0's), to the byte."""

import json
from pathlib import Path

import pytest
from launch import launch, torchrun

from scorediff.commands.plan_cmd import meta_network
from scorediff.config import load_config
from scorediff.training.plan import state_bytes

WORKER = Path(__file__).with_name("plan_fsdp_worker.py")
RANKS, NUM_TOKENS = 3, 21  # 22 rows with the mask
SMALL = "model.hidden_size=32,model.n_heads=4,model.seq_len=16,model.n_blocks=2,model.dropout=0"
CASES = {
    "llama-gqa-qknorm": ("tiny-llama", "model.n_kv_heads=2,model.qk_norm=true,model.intermediate_size=40"),
    "llama-ar-tied": ("tiny-llama-ar", "model.tie_embeddings=true"),
    "dit-diffusion": ("tiny", ""),
}


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    out = tmp_path_factory.mktemp("plan_fsdp")
    cases = [f"{name}={preset}:{','.join(filter(None, [SMALL, extra]))}" for name, (preset, extra) in CASES.items()]
    launch([*torchrun(RANKS), str(WORKER), str(out), str(NUM_TOKENS), *cases], out)
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(RANKS)]


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_fsdp_state_figures_are_the_largest_ranks_shards(measured, name):
    preset, extra = CASES[name]
    config = load_config(preset, [*filter(None, [*SMALL.split(","), *extra.split(",")]), "train.parallel=fsdp"])
    planned = state_bytes(meta_network(config, NUM_TOKENS), RANKS, True, 4)
    ranks = [report[name] for report in measured]
    assert all(rank["sharded"] for rank in ranks)
    for key in ("parameters", "gradients", "optimizer", "ema"):
        figure = getattr(planned, "weights" if key == "parameters" else key)
        assert ranks[0][key] == figure, key
        assert all(rank[key] <= figure for rank in ranks), key
    assert ranks[-1]["parameters"] < ranks[0]["parameters"]  # uneven rows: the case reaches the padding
    whole = state_bytes(meta_network(config, NUM_TOKENS), 1, False, 4)
    assert sum(rank["parameters"] for rank in ranks) == whole.weights  # the shards partition the weights
