"""``scorediff export CHECKPOINT``: the shards of an FSDP checkpoint written whole, equal to the whole weights the
run itself wrote; one-line refusals that write nothing."""

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_run import assert_user_error, run_cli
from safetensors.torch import load_file

from scorediff.loading import load

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("fsdp") / "run"
    done = subprocess.run([sys.executable, str(HERE / "sharded_run.py"), str(run), str(free_port())],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return run


def test_export_writes_the_weights_the_run_wrote_whole(run_dir, tmp_path, capsys):
    written = run_dir / "checkpoints" / "step_00000001"
    shards_only = tmp_path / "step_00000001"
    shutil.copytree(written, shards_only)
    for name in ("model.safetensors", "ema.safetensors"):
        (shards_only / name).unlink()
    assert_user_error(
        capsys, ["sample", "--checkpoint", str(shards_only)], r"holds training shards only.*scorediff export "
    )
    code, stdout, _ = run_cli(capsys, ["export", str(shards_only)])
    assert code == 0 and "model.safetensors and ema.safetensors written whole" in stdout
    for name in ("model.safetensors", "ema.safetensors"):
        exported, reference = load_file(shards_only / name), load_file(written / name)
        assert exported.keys() == reference.keys()
        assert all(torch.equal(exported[key], value) for key, value in reference.items()), name
    assert load(shards_only).model.config.hidden_size == 32


@pytest.mark.parametrize(
    ("where", "pattern"),
    [
        ("nowhere", r"no such checkpoint: .*nowhere$"),
        ("whole", r"is not a sharded checkpoint \(no sharded/ folder\)"),
        ("file", r"is not a sharded checkpoint"),
        ("run", r"is a run folder; export one of its checkpoints, e\.g\. .*step_00000001$"),
    ],
)
def test_export_refuses_what_is_not_a_sharded_checkpoint(run_dir, tmp_path, capsys, where, pattern):
    whole = tmp_path / "whole"
    shutil.copytree(run_dir / "checkpoints" / "step_00000001", whole)
    shutil.rmtree(whole / "sharded")
    (tmp_path / "file").write_text("not a checkpoint")
    paths = {"nowhere": tmp_path / "nowhere", "whole": whole, "file": tmp_path / "file", "run": run_dir}
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert_user_error(capsys, ["export", str(paths[where])], pattern)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
