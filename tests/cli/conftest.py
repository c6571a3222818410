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
