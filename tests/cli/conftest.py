import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from micro import corpus_head, micro_values

from scorediff.cli import main


@pytest.fixture(scope="session")
def cli_corpus(tmp_path_factory) -> Path:
    return corpus_head(tmp_path_factory.mktemp("cli_corpus") / "head.txt", 100_000)


@pytest.fixture(scope="session")
def micro_yaml(tmp_path_factory, cli_corpus) -> Path:
    root = tmp_path_factory.mktemp("cli_config")
    values = micro_values(cli_corpus, root / "cache", log_every=2, eval_every=3)
    del values["train"]["device"]
    path = root / "micro.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, micro_yaml):
    """A run trained once through the command line, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("cli_runs")
    code = main(
        ["train", "--config", str(micro_yaml), "--out", str(out), "--name", "shared", "--quiet", "--num-samples", "1"]
    )
    assert code == 0
    return out / "shared"


@pytest.fixture(scope="session")
def trained_ar_run(tmp_path_factory, cli_corpus):
    """An autoregressive run trained once through the command line."""
    root = tmp_path_factory.mktemp("cli_ar")
    values = micro_values(cli_corpus, root / "cache", "autoregressive", log_every=2, eval_every=3)
    del values["train"]["device"]
    path = root / "micro-ar.yaml"
    path.write_text(yaml.safe_dump(values))
    code = main(["train", "--config", str(path), "--out", str(root), "--name", "ar", "--quiet", "--num-samples", "1"])
    assert code == 0
    return root / "ar"


@pytest.fixture(scope="session")
def trained_radd_run(tmp_path_factory, cli_corpus):
    """A time-independent absorbing run (the tiny preset's parameterisation), trained through the command line."""
    root = tmp_path_factory.mktemp("cli_radd")
    values = micro_values(cli_corpus, root / "cache")
    values["model"]["time_conditioning"] = False
    values["diffusion"] = {"mask_count": True}
    del values["train"]["device"]
    path = root / "micro-radd.yaml"
    path.write_text(yaml.safe_dump(values))
    code = main(["train", "--config", str(path), "--out", str(root), "--name", "radd", "--quiet", "--num-samples", "0"])
    assert code == 0
    return root / "radd"


@pytest.fixture(scope="session")
def trained_block_run(tmp_path_factory, cli_corpus):
    """A block diffusion run (blocks of 8), trained through the command line."""
    root = tmp_path_factory.mktemp("cli_block")
    values = micro_values(cli_corpus, root / "cache", log_every=2, eval_every=3)
    values["model"].update(time_conditioning=False, block_size=8)
    values["diffusion"] = {"mask_count": True}
    del values["train"]["device"]
    path = root / "micro-block.yaml"
    path.write_text(yaml.safe_dump(values))
    code = main(
        ["train", "--config", str(path), "--out", str(root), "--name", "block", "--quiet", "--num-samples", "1"]
    )
    assert code == 0
    return root / "block"


@pytest.fixture(scope="session")
def shards_only(tmp_path_factory) -> Path:
    """A micro FSDP checkpoint (``sharded_run.py``, 2 DiT blocks) with its whole weights taken away: what export
    is for. Shared: a test copies it before changing anything."""
    run = tmp_path_factory.mktemp("fsdp") / "run"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = Path(__file__).parent / "sharded_run.py"
    done = subprocess.run([sys.executable, str(script), str(run), str(port)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoint = run / "checkpoints" / "step_00000001"
    for name in ("model.safetensors", "ema.safetensors"):
        (checkpoint / name).unlink()
    return checkpoint
