"""Fixed-length windows of a memory-mapped token file: random ones for training, all of them for evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .shards import META_FILE
from .sources import DataError


class TokenWindows:
    """One split (``train`` or ``val``) of a shard directory, read through ``np.memmap``.

    Args:
        directory (str | Path): written by ``write_shards``.
        split (str): ``"train"`` or ``"val"``.
        seq_len (int): window length L.
    """

    def __init__(self, directory: str | Path, split: str, seq_len: int):
        directory = Path(directory)
        meta = json.loads((directory / META_FILE).read_text())
        self.meta = meta
        self.seq_len = int(seq_len)
        self.tokens = np.memmap(directory / f"{split}.bin", dtype=np.dtype(meta["dtype"]), mode="r")
        if len(self.tokens) < self.seq_len:
            raise DataError(
                f"the {split} split has {len(self.tokens)} tokens; need at least seq_len={self.seq_len} "
                f"(use more data or a shorter model.seq_len)"
            )

    def __len__(self) -> int:
        """Number of non-overlapping windows (what ``all_windows`` yields)."""
        return len(self.tokens) // self.seq_len

    def random_batch(self, batch_size: int, generator: torch.Generator) -> Tensor:
        """Windows at uniformly drawn offsets, int64 (batch_size, seq_len)."""
        high = len(self.tokens) - self.seq_len + 1
        offsets = torch.randint(0, high, (batch_size,), generator=generator).numpy()
        rows = np.stack([self.tokens[o : o + self.seq_len] for o in offsets]).astype(np.int64)
        return torch.from_numpy(rows)

    def all_windows(self, max_windows: int | None = None) -> Tensor:
        """Consecutive non-overlapping windows from the start, int64 (N, seq_len)."""
        count = len(self) if max_windows is None else min(len(self), int(max_windows))
        flat = np.asarray(self.tokens[: count * self.seq_len], dtype=np.int64)
        return torch.from_numpy(flat.reshape(count, self.seq_len))

    def spread_windows(self, count: int | None = None) -> Tensor:
        """``count`` non-overlapping windows spread evenly over the split (all of them when None or more).

        Evaluating on a spread rather than on the first windows keeps a small evaluation representative
        of the whole split.
        """
        total = len(self)
        if count is None or count >= total:
            return self.all_windows()
        starts = (np.arange(count, dtype=np.int64) * total // count) * self.seq_len
        rows = np.stack([self.tokens[s : s + self.seq_len] for s in starts]).astype(np.int64)
        return torch.from_numpy(rows)
