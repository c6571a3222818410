"""A run small enough to train a few steps in seconds, and a slice of the embedded corpus to train it on."""

import lzma
from pathlib import Path

from scorediff.data.sources import EMBEDDED


def corpus_head(path: Path, chars: int) -> Path:
    with lzma.open(EMBEDDED["shakespeare"], "rt", encoding="utf-8") as handle:
        path.write_text(handle.read(chars))
    return path


def micro_values(corpus: Path, cache_dir: Path, objective: str = "diffusion", **train) -> dict:
    return {
        "objective": objective,
        "model": {"hidden_size": 32, "cond_dim": 16, "n_blocks": 1, "n_heads": 2, "seq_len": 32},
        "data": {"source": str(corpus), "tokenizer": "char", "cache_dir": str(cache_dir)},
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
            "device": "cpu",
            "ema": 0.9,
            **train,
        },
        "sampling": {"steps": 4},
    }
