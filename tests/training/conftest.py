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
        values = micro_values(
            corpus, tmp_path / "cache", objective, out_dir=str(tmp_path / "runs"), run_name="run", **train
        )
        path = tmp_path / "micro.yaml"
        path.write_text(yaml.safe_dump(values))
        return load_config(str(path)), path

    return make
