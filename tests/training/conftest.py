import lzma
from pathlib import Path

import pytest
import yaml

from scorediff.config import load_config
from scorediff.data.sources import EMBEDDED


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """The first 200,000 characters of the embedded corpus."""
    path = tmp_path_factory.mktemp("corpus") / "shakespeare_head.txt"
    with lzma.open(EMBEDDED["shakespeare"], "rt", encoding="utf-8") as handle:
        path.write_text(handle.read(200_000))
    return path


def micro_values(corpus: Path, tmp_path: Path, **train) -> dict:
    """A run small enough to train a few steps in seconds."""
    return {
        "model": {"hidden_size": 32, "cond_dim": 16, "n_blocks": 1, "n_heads": 2, "seq_len": 32},
        "data": {"source": str(corpus), "tokenizer": "char", "cache_dir": str(tmp_path / "cache")},
        "optim": {"lr": 3e-3, "warmup_steps": 2},
        "train": {
            "batch_size": 8,
            "max_steps": 6,
            "log_every": 1,
            "eval_every": 0,
            "save_every": 3,
            "eval_windows": 4,
            "eval_num_t": 2,
            "preview_samples": 1,
            "out_dir": str(tmp_path / "runs"),
            "run_name": "run",
            "device": "cpu",
            "ema": 0.9,
            **train,
        },
        "sampling": {"steps": 4},
    }


@pytest.fixture
def micro_config(corpus, tmp_path):
    def make(**train):
        path = tmp_path / "micro.yaml"
        path.write_text(yaml.safe_dump(micro_values(corpus, tmp_path, **train)))
        return load_config(str(path)), path

    return make
