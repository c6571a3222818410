"""Tokenise a saved Hugging Face dataset into token shards with several processes, streaming.

The dataset (``datasets.Dataset.save_to_disk``; Arrow files that are memory-mapped, never loaded whole) is cut
into pieces of ``rows_per_piece`` consecutive rows. Each worker process tokenises its pieces ``rows_per_read``
rows at a time and writes every piece to its own part file; the parent appends the parts, in row order, to the
one ``SplitWriter`` that also splits single-process shards, and deletes each part once appended. So the shards
are those ``write_shards`` writes, whatever the number of processes, and no process holds more than a read's
rows, their tokens and one chunk. Everything is written in a temporary folder renamed into place when complete.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..fileio import atomic_directory
from .shards import META_FILE, SplitWriter, shard_meta, token_dtype
from .sources import DataError, is_hf_dataset
from .tokenizers import Tokenizer, load_tokenizer

ROWS_PER_PIECE = 4096
"""Rows of the dataset in one worker's task (one part file)."""
ROWS_PER_READ = 256
"""Rows a worker reads, tokenises and writes at a time: what bounds its memory."""
PART_BLOCK = 1 << 22
"""Tokens of a part file the parent reads at a time when appending it."""


def _datasets():
    try:
        import datasets
    except ImportError:
        raise ImportError("reading a saved Hugging Face dataset needs `pip install scorediff[hf]` (datasets)") from None
    return datasets


def open_dataset(path: str, text_field: str):
    """The dataset saved at ``path`` (its ``train`` split, else its first, for a ``DatasetDict``), memory-mapped,
    with only ``text_field``; a one-line ``DataError`` when it is missing, not a dataset, lacks the column or is
    empty."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise DataError(f"dataset {path!r} does not exist")
    if not is_hf_dataset(folder):
        raise DataError(f"{path} is not a saved Hugging Face dataset (no dataset_info.json or dataset_dict.json)")
    datasets = _datasets()
    try:
        dataset = datasets.load_from_disk(str(folder))
    except IndexError:  # datasets saves no Arrow file for an empty split, then cannot read it back (5.2)
        raise DataError(f"dataset {path} has no rows") from None
    if isinstance(dataset, datasets.DatasetDict):
        dataset = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
    if text_field not in dataset.column_names:
        raise DataError(f"dataset {path} has no column {text_field!r}; columns: {dataset.column_names}")
    if len(dataset) == 0:
        raise DataError(f"dataset {path} has no rows")
    return dataset.select_columns([text_field])


def read_rows(dataset, text_field: str, start: int, end: int, rows_per_read: int) -> Iterator[tuple[int, list]]:
    """``(first row, values)`` of ``text_field`` in rows ``[start, end)``, at most ``rows_per_read`` at a time."""
    for low in range(start, end, rows_per_read):
        yield low, dataset[low : min(low + rows_per_read, end)][text_field]


@functools.lru_cache(maxsize=4)
def _worker_inputs(path: str, text_field: str, tokenizer_path: str) -> tuple:
    """What a worker process opens once for all its pieces."""
    return open_dataset(path, text_field), load_tokenizer(tokenizer_path)


def tokenise_piece(task: tuple) -> int:
    """The worker's side of ``write_piece``: ``task`` is ``(dataset path, text_field, tokenizer path, start, end,
    out, dtype name, rows_per_read)``."""
    path, text_field, tokenizer_path, *piece = task
    return write_piece(*_worker_inputs(path, text_field, tokenizer_path), path, text_field, *piece)


def write_piece(dataset, tokenizer: Tokenizer, path, text_field, start, end, out, dtype, rows_per_read) -> int:
    """Tokenise rows ``[start, end)`` of ``dataset`` into the part file ``out`` as ``write_shards`` would: each
    non-empty text's tokens, then the tokenizer's separator. Returns the tokens written."""
    separator, written = tokenizer.separator, 0
    with open(out, "wb") as part:
        for offset, texts in read_rows(dataset, text_field, start, end, rows_per_read):
            tokens: list[int] = []
            for row, text in enumerate(texts, start=offset):
                if text is None or text == "":
                    continue
                if not isinstance(text, str):
                    raise DataError(f"dataset {path}: row {row} of {text_field!r} is {type(text).__name__}, not text")
                try:
                    tokens.extend(tokenizer.encode(text))
                except ValueError as error:
                    raise DataError(f"dataset {path}: row {row}: {error}") from None
                tokens.extend(separator)
            part.write(np.asarray(tokens, dtype=dtype).tobytes())
            written += len(tokens)
    return written


def _append_part(writer: SplitWriter, part: Path) -> None:
    tokens = np.memmap(part, dtype=writer.dtype, mode="r") if part.stat().st_size else np.empty(0, writer.dtype)
    for low in range(0, len(tokens), PART_BLOCK):
        writer.add(np.array(tokens[low : low + PART_BLOCK]))
    del tokens
    part.unlink()


def write_dataset_shards(
    path: str,
    tokenizer: Tokenizer,
    out_dir: str | Path,
    num_proc: int = 1,
    val_fraction: float = 0.05,
    chunk_tokens: int = 16384,
    text_field: str = "text",
    rows_per_piece: int = ROWS_PER_PIECE,
    rows_per_read: int = ROWS_PER_READ,
) -> Path:
    """Tokenise the saved dataset at ``path`` into ``out_dir`` with ``num_proc`` processes (1: in this one).

    ``out_dir`` holds ``train.bin`` and ``val.bin`` (byte for byte those ``write_shards`` writes for the same
    dataset), ``tokenizer.json`` and ``meta.json`` (token counts, rows, tokenizer), or nothing at all.

    Raises:
        DataError: one line, before anything is written, for a missing dataset, a missing column or no rows;
            while writing, for a dataset that holds no text.
    """
    if num_proc < 1:
        raise DataError(f"num_proc must be >= 1; got {num_proc}")
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be in (0, 1); got {val_fraction}")
    dataset = open_dataset(str(path), text_field)
    rows = len(dataset)
    dtype = token_dtype(tokenizer.vocab_size)
    with atomic_directory(Path(out_dir), replace=False) as tmp:
        tokenizer_path = str(tokenizer.save(tmp))
        (tmp / "parts").mkdir()
        tasks = [
            (str(path), text_field, tokenizer_path, start, min(start + rows_per_piece, rows),
             str(tmp / "parts" / f"{number:08d}.bin"), np.dtype(dtype).name, rows_per_read)
            for number, start in enumerate(range(0, rows, rows_per_piece))
        ]  # fmt: skip
        with SplitWriter(tmp, dtype, val_fraction, chunk_tokens) as writer:
            if num_proc == 1:
                for task in tasks:
                    write_piece(dataset, tokenizer, *task[:2], *task[3:])
                    _append_part(writer, Path(task[5]))
            else:  # spawned: a forked copy of a parent holding torch and a tokenizer's threads is not safe
                with multiprocessing.get_context("spawn").Pool(num_proc) as pool:
                    for task, _ in zip(tasks, pool.imap(tokenise_piece, tasks), strict=True):  # in row order
                        _append_part(writer, Path(task[5]))
                    pool.close()  # the workers end on their own; leaving the block would terminate them
                    pool.join()
            counts = writer.finish(str(path))
        (tmp / "parts").rmdir()
        meta = shard_meta(dtype, tokenizer, counts, str(path), val_fraction, chunk_tokens)
        meta.update(
            rows=rows, text_field=text_field, tokenizer=Path(tokenizer_path).name, tokenizer_kind=tokenizer.kind
        )
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
    return Path(out_dir)
