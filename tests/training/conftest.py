import pytest
import yaml
from micro import corpus_head, micro_values

from scorediff.config import load_config


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    return corpus_head(tmp_path_factory.mktemp("corpus") / "shakespeare_head.txt", 200_000)


@pytest.fixture
def micro_config(corpus, tmp_path):
    def make(objective="diffusion", **train):
        """``objective``: ``diffusion``, ``autoregressive``, or ``block`` (block diffusion, blocks of 8)."""
        block = objective == "block"
        values = micro_values(
            corpus, tmp_path / "cache", "diffusion" if block else objective, out_dir=str(tmp_path / "runs"),
            run_name="run", **train,
        )  # fmt: skip
        if block:
            values["model"].update(block_size=8, time_conditioning=False)
            values["diffusion"] = {"mask_count": True}
        path = tmp_path / "micro.yaml"
        path.write_text(yaml.safe_dump(values))
        return load_config(str(path)), path

    return make
