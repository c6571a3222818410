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

    A split is a list of segments, ``(start, length, label)`` rows of its token file: windows lie inside one
    segment. Text shards are one segment (documents are joined by the tokenizer's separator); DNA shards list
    one segment per chunk of a record (``scorediff.data.dna``), with the record's label.

    Args:
        directory (str | Path): written by ``write_shards`` or ``write_dna_shards``.
        split (str): ``"train"`` or ``"val"``.
        seq_len (int): window length L.
    """

    def __init__(self, directory: str | Path, split: str, seq_len: int):
        directory = Path(directory)
        meta = json.loads((directory / META_FILE).read_text())
        self.meta = meta
        self.labels: list[str] = list(meta.get("labels", []))
        self.seq_len = int(seq_len)
        self.tokens = np.memmap(directory / f"{split}.bin", dtype=np.dtype(meta["dtype"]), mode="r")
        listed = directory / f"{split}.segments.npy"
        segments = np.load(listed) if listed.exists() else np.array([[0, len(self.tokens), -1]], dtype=np.int64)
        self.segments = segments[segments[:, 1] >= self.seq_len]  # (S, 3): those that hold a window
        if not len(self.segments):
            longest = int(segments[:, 1].max()) if len(segments) else 0
            raise DataError(
                f"the {split} split's longest stretch is {longest} tokens; need at least seq_len={self.seq_len} "
                f"(use more data or a shorter model.seq_len)"
            )
        self._starts_per_segment = self.segments[:, 1] - self.seq_len + 1
        self._cumulative = np.cumsum(self._starts_per_segment)

    @property
    def labelled(self) -> bool:
        return bool(self.labels)

    def __len__(self) -> int:
        """Number of non-overlapping windows (what ``all_windows`` yields)."""
        return int((self.segments[:, 1] // self.seq_len).sum())

    def random_batch(self, batch_size: int, generator: torch.Generator) -> Tensor:
        """Windows at uniformly drawn offsets, int64 (batch_size, seq_len)."""
        return self.random_examples(batch_size, generator)["x_0"]

    def random_examples(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        """``x_0``: windows drawn uniformly among every window that fits in a segment, int64 (B, L); ``label``:
        their segments' labels, int64 (B,), when the split is labelled."""
        draws = torch.randint(0, int(self._cumulative[-1]), (batch_size,), generator=generator).numpy()
        segment = np.searchsorted(self._cumulative, draws, side="right")
        offsets = self.segments[segment, 0] + draws - (self._cumulative[segment] - self._starts_per_segment[segment])
        return self._examples(offsets, segment)

    def _examples(self, offsets: np.ndarray, segment: np.ndarray) -> dict[str, Tensor]:
        rows = self.tokens[np.asarray(offsets, dtype=np.int64)[:, None] + np.arange(self.seq_len)]  # (N, L)
        out = {"x_0": torch.from_numpy(rows.astype(np.int64))}
        if self.labelled:
            out["label"] = torch.from_numpy(self.segments[segment, 2].astype(np.int64))
        return out

    def _window_starts(self) -> tuple[np.ndarray, np.ndarray]:
        """Offsets of the non-overlapping windows, segment by segment, and the segment of each."""
        counts = self.segments[:, 1] // self.seq_len
        segment = np.repeat(np.arange(len(self.segments)), counts)
        within = np.arange(len(segment)) - np.repeat(np.cumsum(counts) - counts, counts)
        return self.segments[segment, 0] + within * self.seq_len, segment

    def all_windows(self, max_windows: int | None = None) -> Tensor:
        """Consecutive non-overlapping windows from the start, int64 (N, seq_len)."""
        return self.all_examples(max_windows)["x_0"]

    def all_examples(self, max_windows: int | None = None) -> dict[str, Tensor]:
        starts, segment = self._window_starts()
        count = len(starts) if max_windows is None else min(len(starts), int(max_windows))
        return self._examples(starts[:count], segment[:count])

    def spread_windows(self, count: int | None = None) -> Tensor:
        """``count`` non-overlapping windows spread evenly over the split (all of them when None or more).

        Evaluating on a spread rather than on the first windows keeps a small evaluation representative
        of the whole split.
        """
        return self.spread_examples(count)["x_0"]

    def spread_examples(self, count: int | None = None) -> dict[str, Tensor]:
        return spread_examples_over([self], count)

    def examples_at(self, indices: np.ndarray) -> dict[str, Tensor]:
        """The non-overlapping windows numbered ``indices`` (in ``all_windows`` order), with their labels."""
        starts, segment = self._window_starts()
        return self._examples(starts[indices], segment[indices])


def spread_indices(total: int, count: int | None) -> np.ndarray:
    """``count`` indices spread evenly over ``range(total)`` (all of them when ``count`` is None or more)."""
    if count is None or count >= total:
        return np.arange(total, dtype=np.int64)
    return np.arange(count, dtype=np.int64) * total // count


def spread_examples_over(splits: list[TokenWindows], count: int | None) -> dict[str, Tensor]:
    """``count`` non-overlapping windows spread evenly over the windows of ``splits`` taken one after another
    (all of them when None or more); only the picked windows are read."""
    sizes = [len(split) for split in splits]
    picked = spread_indices(sum(sizes), count)
    parts, offset = [], 0
    for split, size in zip(splits, sizes, strict=True):
        parts.append(split.examples_at(picked[(picked >= offset) & (picked < offset + size)] - offset))
        offset += size
    return {name: torch.cat([part[name] for part in parts]) for name in parts[0]}
