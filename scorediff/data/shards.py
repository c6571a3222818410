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
from .sources import DataError, fingerprint, iter_text
from .tokenizers import Tokenizer

META_FILE = "meta.json"


def _goes_to_validation(chunk_index: int, val_fraction: float) -> bool:
    digest = hashlib.blake2b(chunk_index.to_bytes(8, "little"), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < val_fraction


def _token_dtype(vocab_size: int):
    return np.uint16 if vocab_size <= 2**16 else np.uint32


def write_shards(
    spec: str,
    tokenizer: Tokenizer,
    out_dir: str | Path,
    val_fraction: float = 0.05,
    chunk_tokens: int = 16384,
    text_field: str = "text",
) -> Path:
    """Tokenise ``spec`` into ``out_dir`` (written in a temporary folder, then renamed into place)."""
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be in (0, 1); got {val_fraction}")
    out_dir = Path(out_dir)
    dtype = _token_dtype(tokenizer.vocab_size)
    with atomic_directory(out_dir, replace=False) as tmp:  # first writer wins; readers never see it vanish
        counts = {"train": 0, "val": 0}
        with open(tmp / "train.bin", "wb") as train, open(tmp / "val.bin", "wb") as val:
            files = {"train": train, "val": val}
            buffer: list[int] = []
            chunk_index = 0
            started = False

            def flush(tokens: list[int], index: int) -> None:
                split = "val" if _goes_to_validation(index, val_fraction) else "train"
                files[split].write(np.asarray(tokens, dtype=dtype).tobytes())
                counts[split] += len(tokens)

            for piece in iter_text(spec, text_field):
                if piece is None:
                    if started:
                        buffer.extend(tokenizer.separator)
                    started = False
                    continue
                if not piece:
                    continue
                try:
                    buffer.extend(tokenizer.encode(piece))
                except ValueError as error:
                    raise DataError(f"{spec}: {error}") from None
                started = True
                start = 0
                while len(buffer) - start >= chunk_tokens:
                    flush(buffer[start : start + chunk_tokens], chunk_index)
                    start += chunk_tokens
                    chunk_index += 1
                del buffer[:start]  # once per piece: slicing per chunk made one long line quadratic
            if buffer:
                flush(buffer, chunk_index)
        total = counts["train"] + counts["val"]
        if total == 0:
            raise DataError(f"data {spec!r} holds no text")
        if counts["train"] == 0 or counts["val"] == 0:
            _rebalance(tmp, dtype, val_fraction, counts)
        meta = {
            "format": 1,
            "dtype": np.dtype(dtype).name,
            "vocab_size": tokenizer.vocab_size,
            "train_tokens": counts["train"],
            "val_tokens": counts["val"],
            "source": spec,
            "val_fraction": val_fraction,
            "chunk_tokens": chunk_tokens,
        }
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
    """A name for the shards of this source and tokenizer; it changes when a file changes."""
    payload = json.dumps([fingerprint(spec), tokenizer_json, val_fraction, chunk_tokens, text_field])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
