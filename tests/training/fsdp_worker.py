"""The runs that tests/training/test_fsdp.py compares, in one launch per world size (starting processes is the slow
part): ``python fsdp_worker.py OUT CORPUS one`` (1 process, ddp) or under ``torchrun --nproc_per_node=2 ... pair``
(2 processes, fsdp). Rank 0 writes what it measured to ``OUT/<phase>.json``; the runs' metrics are in ``OUT/runs``."""

import json
import os
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/, for micro

from micro import micro_values  # noqa: E402

import scorediff.devices  # noqa: E402
from scorediff.config import ConfigError, config_from_dict  # noqa: E402
from scorediff.training import distributed, sharded, step, train  # noqa: E402
from scorediff.training.fsdp import state_bytes  # noqa: E402
from scorediff.training.setup import build, prepare_data, resolve_from_data  # noqa: E402
from scorediff.training.step import draw_batch, train_step  # noqa: E402

CASES = {
    "dit-diffusion": ("diffusion", {}),
    "dit-ar": ("autoregressive", {}),
    "llama-diffusion": ("diffusion", {"arch": "llama", "n_kv_heads": 1}),
    "llama-ar": ("autoregressive", {"arch": "llama", "n_kv_heads": 1, "tie_embeddings": True}),
    # block diffusion with the shifted prediction: the network an AR model is adapted into
    "llama-block": (
        "diffusion",
        {"arch": "llama", "n_kv_heads": 1, "time_conditioning": False, "shift": True, "block_size": 4},
    ),
}
STEPS = 20
RESUMED = "resumed"
"""The run that fails while saving at step 10 and is resumed from step 5."""


def config(out: Path, corpus: Path, case: str, name: str, pair: bool, model=None, **train):
    objective, shape = CASES[case]
    values = micro_values(corpus, out / "cache", objective, out_dir=str(out / "runs"), run_name=name)
    values["model"].update(n_blocks=2, **shape, **(model or {}))
    fixed = dict(max_steps=STEPS, save_every=5, keep_last=5, preview_samples=0, bf16=False)
    values["train"].update(fixed, parallel="fsdp" if pair else "ddp", **train)
    return config_from_dict(values)


def equality_runs(out: Path, corpus: Path, phase: str) -> None:
    """Every backbone and objective for STEPS steps, then the DiT diffusion run started from the 2-process one's
    weights; at 2 ranks the llama diffusion run also accumulates gradients over 2 micro-batches and recomputes its
    blocks' activations (activation checkpointing)."""
    for case in CASES:
        extra = {"grad_accum": 2, "activation_checkpointing": True} if phase == "pair" and "llama-d" in case else {}
        train(config(out, corpus, case, f"{case}-{phase}", phase == "pair", **extra), progress=False)
    start = str(out / "runs" / "dit-diffusion-pair")  # --init: whole weights loaded into a sharded network
    train(config(out, corpus, "dit-diffusion", f"init-{phase}", phase == "pair", init=start), progress=False)


def bf16_run(out: Path, corpus: Path) -> None:
    """The dit-diffusion case under FSDP's bf16 policy (bf16 compute, float32 weights and reduction), as on hardware
    with native bf16: this CPU has none, so the check that picks it is told it has."""
    checks = scorediff.devices.fast_bf16, step.fast_bf16
    scorediff.devices.fast_bf16 = step.fast_bf16 = lambda device: True
    try:
        train(config(out, corpus, "dit-diffusion", "bf16", True, bf16=True), progress=False)
    finally:
        scorediff.devices.fast_bf16, step.fast_bf16 = checks


def memory(out: Path, corpus: Path, pair: bool) -> dict:
    """Bytes of parameters, gradients and AdamW state this process holds after a step and a backward."""
    cfg = config(out, corpus, "llama-diffusion", "memory", pair, model={"hidden_size": 64})
    info, device = distributed.setup("cpu")
    try:
        data = prepare_data(cfg, info, None)
        state = build(resolve_from_data(cfg, data), data.tokenizer, device, info)
        train_step(state, draw_batch(state, data.train, device))
        state.objective.loss(state.network, draw_batch(state, data.train, device)).mean().backward()
        return state_bytes(state.model, state.optimizer)
    finally:
        distributed.teardown()


def compiled_run(out: Path, corpus: Path) -> None:
    """The dit-diffusion case with its sharded network compiled (``train.compile``: inductor's CPU kernels)."""
    train(config(out, corpus, "dit-diffusion", "compiled", True, compile=True), progress=False)


def fail_while_saving(out: Path, corpus: Path) -> str:
    """Train the dit-diffusion case again, failing its second save (step 10) after every shard was written but
    before the folder was complete; returns the error."""
    write, calls = sharded.write_shards, []

    def write_then_fail(state_dict, folder):
        write(state_dict, folder)
        calls.append(folder)
        if len(calls) == 2:
            raise RuntimeError(f"killed while saving into {folder.parent.name}")

    sharded.write_shards = write_then_fail
    try:
        train(config(out, corpus, "dit-diffusion", RESUMED, True), progress=False)
    except RuntimeError as error:
        return str(error)
    finally:
        sharded.write_shards = write
    return "no error"


def odd_batch(out: Path, corpus: Path) -> str | None:
    """What 2 processes say to a batch they do not divide."""
    try:
        train(config(out, corpus, "dit-diffusion", "odd", True, batch_size=7), progress=False)
    except ConfigError as error:
        return str(error)
    return None


def main() -> None:
    out, corpus, phase = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    pair, runs, main_rank = phase == "pair", out / "runs", int(os.environ.get("RANK", 0)) == 0
    if pair:  # one process group for every run: gloo's groups are not reliably made again under one torchrun
        torch.distributed.init_process_group("gloo")
        distributed.teardown = lambda: None
    equality_runs(out, corpus, phase)
    report = {"memory": memory(out, corpus, pair)}
    if pair:
        bf16_run(out, corpus)
        compiled_run(out, corpus)
        report["failure"] = fail_while_saving(out, corpus)
        report["odd_batch"] = odd_batch(out, corpus)
        if main_rank:
            shutil.copytree(runs / RESUMED, runs / f"{RESUMED}-one")  # resumed at 1 process by the other phase
            debris = runs / RESUMED / "checkpoints" / ".tmp-killed"  # what a kill during a save leaves
            shutil.copytree(runs / RESUMED / "checkpoints" / "step_00000005", debris)
            report["checkpoints"] = sorted(p.name for p in (runs / RESUMED / "checkpoints").iterdir())
        train(config(out, corpus, "dit-diffusion", RESUMED, True), resume=True, progress=False)
    else:
        train(config(out, corpus, "dit-diffusion", f"{RESUMED}-one", False), resume=True, progress=False)
    if main_rank:
        (out / f"{phase}.json").write_text(json.dumps(report))
    if pair:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
