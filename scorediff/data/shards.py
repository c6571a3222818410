"""Tokenise a source once into memory-mapped token files (nanoGPT style) with a small ``meta.json``.

Layout of a shard directory: ``train.bin`` and ``val.bin`` (flat token ids, uint16 or uint32) and
``meta.json``. The split is deterministic: the token stream is cut into chunks of ``chunk_tokens`` and
chunk ``k`` goes to validation when a fixed hash of ``k`` falls below ``val_fraction``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..fileio import atomic_directory
from .reading import _changed
from .sources import DataError, fingerprint, iter_text
from .tokenizers import Tokenizer

META_FILE = "meta.json"
# how files are read into text; raised when that changes, so shards cached under the old reading are not reused
# (2: a ``.json`` file is JSON Lines, not plain text)
READING = 2


def _goes_to_validation(chunk_index: int, val_fraction: float) -> bool:
    digest = hashlib.blake2b(chunk_index.to_bytes(8, "little"), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < val_fraction


def token_dtype(vocab_size: int):
    return np.uint16 if vocab_size <= 2**16 else np.uint32


class SplitWriter:
    """Cuts a token stream into chunks of ``chunk_tokens`` and appends chunk ``k`` to ``train.bin`` or ``val.bin``
    of ``directory`` by a fixed hash of ``k``: the one owner of the split, whoever tokenised the stream.

    Holds less than one chunk between calls to ``add``.
    """

    def __init__(self, directory: Path, dtype, val_fraction: float, chunk_tokens: int):
        if not 0 < val_fraction < 1:
            raise DataError(f"val_fraction must be in (0, 1); got {val_fraction}")
        self.directory, self.dtype = Path(directory), dtype
        self.val_fraction, self.chunk_tokens = val_fraction, chunk_tokens
        self.files = {split: open(self.directory / f"{split}.bin", "wb") for split in ("train", "val")}
        self.counts = {"train": 0, "val": 0}
        self._pending: list[np.ndarray] = []  # less than a chunk, joined only once a chunk is full
        self._pending_tokens = 0
        self._chunk_index = 0

    def __enter__(self) -> SplitWriter:
        return self

    def __exit__(self, *error) -> None:
        for handle in self.files.values():
            handle.close()

    def add(self, tokens) -> None:
        """Append ``tokens`` (a list or 1-D array of ids) to the stream."""
        self._pending.append(np.asarray(tokens, dtype=self.dtype))
        self._pending_tokens += len(self._pending[-1])
        if self._pending_tokens < self.chunk_tokens:
            return
        buffer = np.concatenate(self._pending)
        start = 0
        while len(buffer) - start >= self.chunk_tokens:
            self._flush(buffer[start : start + self.chunk_tokens])
            start += self.chunk_tokens
        self._pending = [buffer[start:].copy()]
        self._pending_tokens = len(self._pending[0])

    def _flush(self, chunk: np.ndarray) -> None:
        split = "val" if _goes_to_validation(self._chunk_index, self.val_fraction) else "train"
        self.files[split].write(chunk.tobytes())
        self.counts[split] += len(chunk)
        self._chunk_index += 1

    def finish(self, spec: str) -> dict[str, int]:
        """Write the last partial chunk, close the files and return the token counts of both splits; a corpus of
        one chunk is split contiguously so that both splits hold tokens."""
        if self._pending_tokens:
            self._flush(np.concatenate(self._pending))
        self.__exit__()
        if self.counts["train"] + self.counts["val"] == 0:
            raise DataError(f"data {spec!r} holds no text")
        if self.counts["train"] == 0 or self.counts["val"] == 0:
            _rebalance(self.directory, self.dtype, self.val_fraction, self.counts)
        return self.counts


def shard_meta(dtype, tokenizer: Tokenizer, counts: dict[str, int], spec: str, val_fraction: float, chunk_tokens: int):
    """What ``meta.json`` says of a text shard directory."""
    return {
        "format": 1,
        "dtype": np.dtype(dtype).name,
        "vocab_size": tokenizer.vocab_size,
        "train_tokens": counts["train"],
        "val_tokens": counts["val"],
        "source": spec,
        "val_fraction": val_fraction,
        "chunk_tokens": chunk_tokens,
    }


def write_shards(
    spec: str,
    tokenizer: Tokenizer,
    out_dir: str | Path,
    val_fraction: float = 0.05,
    chunk_tokens: int = 16384,
    text_field: str = "text",
) -> Path:
    """Tokenise ``spec`` into ``out_dir`` (written in a temporary folder, then renamed into place); a file that
    changed while it was read is an error, and nothing is kept (its shards would be filed under the old file)."""
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be in (0, 1); got {val_fraction}")
    out_dir, before = Path(out_dir), fingerprint(spec)
    dtype = token_dtype(tokenizer.vocab_size)
    with atomic_directory(out_dir, replace=False) as tmp:  # first writer wins; readers never see it vanish
        with SplitWriter(tmp, dtype, val_fraction, chunk_tokens) as writer:
            started = False
            for piece in iter_text(spec, text_field):
                if piece is None:
                    if started:
                        writer.add(tokenizer.separator)
                    started = False
                    continue
                if not piece:
                    continue
                try:
                    writer.add(tokenizer.encode(piece))
                except ValueError as error:
                    raise DataError(f"{spec}: {error}") from None
                started = True
            counts = writer.finish(spec)
        if fingerprint(spec) != before:
            raise _changed(spec)
        meta = shard_meta(dtype, tokenizer, counts, spec, val_fraction, chunk_tokens)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
    return out_dir


def _rebalance(directory: Path, dtype, val_fraction: float, counts: dict[str, int]) -> None:
    """A corpus of very few chunks: make the split contiguous, the last ``val_fraction`` for validation."""
    tokens = np.concatenate([np.fromfile(directory / f"{s}.bin", dtype=dtype) for s in ("train", "val")])
    cut = max(1, min(len(tokens) - 1, int(round(len(tokens) * (1 - val_fraction)))))
    tokens[:cut].tofile(directory / "train.bin")
    tokens[cut:].tofile(directory / "val.bin")
    counts["train"], counts["val"] = cut, len(tokens) - cut


def cache_key(spec: str, tokenizer_json: str, val_fraction: float, chunk_tokens: int, text_field: str) -> str:
    """A name for the shards of this source and tokenizer; it changes when a file changes, and with ``READING``."""
    payload = json.dumps([READING, fingerprint(spec), tokenizer_json, val_fraction, chunk_tokens, text_field])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
