"""The package on the API surface of torch 2.2, the floor ``pyproject.toml`` declares.

This simulates the old API, it does not run old torch: a subprocess deletes from the installed torch what came after
2.2 (``NEWER_THAN_2_2``) and gives ``torch.optim.AdamW`` torch 2.2's refusal of a fused update on CPU tensors, then
imports scorediff and runs commands through ``main``. The core paths (train, sample, a published model loaded on
the meta device) must work; FSDP and reading sharded checkpoints must be refused in one line naming the torch they
need, with nothing written. What deleting names cannot show (an old DCP's metadata format, old kernels) was checked
by hand on a real torch 2.2.2.
"""

import json
import subprocess
import sys
from pathlib import Path

import yaml
from micro import corpus_head, micro_values

import scorediff

MDLM = Path(__file__).parent / "fixtures" / "published" / "tiny_mdlm"

NEWER_THAN_2_2 = {
    "torch.OutOfMemoryError": "2.5",
    "torch.utils.swap_tensors": "2.3",
    "torch.compiler.is_compiling": "2.3",
    "torch.cpu._is_avx512_bf16_supported": "> 2.2",
    "torch.cpu._is_amx_tile_supported": "> 2.2",
    "torch.distributed.fsdp.fully_shard": "2.6",
    "torch.distributed.fsdp.MixedPrecisionPolicy": "2.6",
    "torch.distributed.fsdp.FSDPModule": "2.6",
}
"""What scorediff touches that torch 2.2 lacks (each absent from a real torch 2.2.2), with the torch that added it."""

TORCH_ITSELF_NEEDS = ["torch.compiler.is_compiling"]
"""Deleted only while scorediff is imported (it reads it then): the installed torch's own compiler calls it later."""

OLD_TORCH = """
import contextlib, functools, io, json, sys

import torch
import torch._dynamo  # imports torch.compiler.is_compiling by name
import torch.distributed.fsdp

removed, commands, restored, model = map(json.loads, sys.argv[1:])
kept = {}
for dotted in removed:
    owner, name = dotted.rsplit(".", 1)
    owner = functools.reduce(getattr, owner.split(".")[1:], torch)
    kept[dotted] = owner, name, getattr(owner, name)
    delattr(owner, name)


class AdamW(torch.optim.AdamW):
    def __init__(self, params, *args, **kwargs):  # as torch < 2.4: the groups take the defaults, then CPU is refused
        super().__init__(params, *args, **kwargs)
        if any(group["fused"] and p.device.type == "cpu" for group in self.param_groups for p in group["params"]):
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of supported devices")


torch.optim.AdamW = AdamW

import scorediff
from scorediff.cli import main

for dotted in restored:
    owner, name, value = kept[dotted]
    setattr(owner, name, value)

results = []
for argv in commands:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
    results.append({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
meta = scorediff.load(model, device="meta").model  # converted on the CPU, then put on the meta device
on_meta = all(t.is_meta for t in [*meta.parameters(), *meta.buffers()])
print(json.dumps({"commands": results, "on_meta": on_meta, "parameters": meta.num_parameters()}))
"""


def test_core_paths_work_and_newer_features_are_refused_on_the_torch_2_2_surface(tmp_path):
    corpus = corpus_head(tmp_path / "head.txt", 20_000)
    values = micro_values(
        corpus, tmp_path / "cache", out_dir=str(tmp_path / "runs"), run_name="run", max_steps=2, save_every=2,
        activation_checkpointing=True,
    )  # fmt: skip
    config = tmp_path / "micro.yaml"
    config.write_text(yaml.safe_dump(values))
    run = tmp_path / "runs" / "run"
    fake_shards = tmp_path / "step_00000002"
    (fake_shards / "sharded").mkdir(parents=True)
    commands = [
        ["train", "--config", str(config), "--quiet", "--num-samples", "0"],
        ["sample", "--checkpoint", str(run), "--num-samples", "2", "--steps", "2"],
        ["train", "--config", str(config), "--train.parallel=fsdp", "--train.run_name=sharded"],
        ["export", str(fake_shards)],
    ]
    arguments = [list(NEWER_THAN_2_2), commands, TORCH_ITSELF_NEEDS, str(MDLM)]
    done = subprocess.run(
        [sys.executable, "-c", OLD_TORCH, *map(json.dumps, arguments)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    train, sample, fsdp, export = report["commands"]
    assert train["code"] == 0, train["stderr"]
    assert (run / "checkpoints" / "step_00000002" / "model.safetensors").is_file()
    assert sample["code"] == 0, sample["stderr"]
    assert "--- sample 2 ---" in sample["stdout"]
    assert report["on_meta"]
    assert report["parameters"] == scorediff.load(MDLM).model.num_parameters()
    for result in (fsdp, export):
        assert result["code"] == 2, result["stderr"]
        assert len(result["stderr"].strip().splitlines()) == 1, result["stderr"]
    assert "train.parallel=fsdp needs torch >= 2.6" in fsdp["stderr"]
    assert "a train.parallel=fsdp checkpoint) needs torch >= 2.6" in export["stderr"]
    assert not (tmp_path / "runs" / "sharded").exists()
    assert [p.name for p in fake_shards.iterdir()] == ["sharded"]
