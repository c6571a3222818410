"""Tokenise a source into token shards with several processes, streaming: the shards of one process, byte for byte.

The source is cut into pieces, each a worker's task. A saved Hugging Face dataset (``datasets.Dataset.save_to_disk``;
Arrow files that are memory-mapped, never loaded whole) is cut into pieces of ``rows_per_piece`` consecutive rows,
tokenised ``rows_per_read`` rows at a time. Text files, folders, globs and JSONL are cut into pieces of about
``bytes_per_piece`` bytes: runs of whole small files and parts of large ones (``spans.file_spans``: JSONL between
lines, other text between the pieces one process reads, so a single huge file is shared by every worker too; a
compressed or FASTA file is one worker's). Each worker writes every piece to its own part file; the parent appends
the parts, in order, to the one ``SplitWriter`` that also splits single-process shards, and deletes each part once
appended (``tokenise_in_order``). So the shards are those ``write_shards`` writes, whatever the number of processes,
and no process holds more than a read of rows or a block of text (``sources.PIECE_CHARS``), their tokens and one
chunk. Everything is written in a temporary folder renamed into place when complete.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..fileio import atomic_directory
from .saved_dataset import open_dataset
from .shards import META_FILE, SplitWriter, shard_meta, token_dtype
from .sources import DataError, resolve_files
from .spans import Span, span_texts, text_pieces
from .tokenizers import Tokenizer, load_tokenizer

ROWS_PER_PIECE = 4096
"""Rows of the dataset in one worker's task (one part file)."""
ROWS_PER_READ = 256
"""Rows a worker reads, tokenises and writes at a time: what bounds its memory."""
BYTES_PER_PIECE = 1 << 24
"""Bytes of text files in one worker's task (one part file)."""
PART_BLOCK = 1 << 22
"""Tokens of a part file the parent reads at a time when appending it."""
TOKENS_PER_WRITE = 1 << 20
"""Tokens a text worker gathers before writing them to its part file: it writes once it holds this many or more,
after adding a piece's, so it holds fewer than this plus one piece's tokens."""


def read_rows(dataset, text_field: str, start: int, end: int, rows_per_read: int) -> Iterator[tuple[int, list]]:
    """``(first row, values)`` of ``text_field`` in rows ``[start, end)``, at most ``rows_per_read`` at a time."""
    for low in range(start, end, rows_per_read):
        yield low, dataset[low : min(low + rows_per_read, end)][text_field]


@functools.lru_cache(maxsize=4)
def _worker_inputs(path: str, text_field: str, tokenizer_path: str) -> tuple:
    """What a worker process opens once for all its pieces."""
    return open_dataset(path, text_field), load_tokenizer(tokenizer_path)


@dataclass(frozen=True)
class RowPiece:
    """One worker's task of a saved dataset: rows ``[start, end)`` tokenised into the part file ``out``.

    Attributes:
        path: the dataset's folder.
        text_field: the column of text.
        tokenizer_path: the tokenizer saved for the workers to load.
        start: the piece's first row.
        end: the row after its last.
        out: its part file.
        dtype: the name of the tokens' numpy dtype.
        rows_per_read: rows read, tokenised and written at a time.
    """

    path: str
    text_field: str
    tokenizer_path: str
    start: int
    end: int
    out: str
    dtype: str
    rows_per_read: int


def tokenise_piece(piece: RowPiece) -> str:
    """The worker's side of ``write_piece``, with the dataset and tokenizer opened once per process. Returns the
    part file."""
    return _write_row_piece(*_worker_inputs(piece.path, piece.text_field, piece.tokenizer_path), piece)


def _write_row_piece(dataset, tokenizer: Tokenizer, piece: RowPiece) -> str:
    fields = (piece.path, piece.text_field, piece.start, piece.end, piece.out, piece.dtype, piece.rows_per_read)
    write_piece(dataset, tokenizer, *fields)
    return piece.out


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


@functools.lru_cache(maxsize=4)
def _load_tokenizer(path: str) -> Tokenizer:
    return load_tokenizer(path)


def tokenise_spans(task: tuple[str, tuple[Span, ...]], tokenizer_path: str, spec: str, text_field: str, dtype) -> str:
    """The worker's side of ``write_spans``, with the tokenizer saved at ``tokenizer_path``."""
    return write_spans(_load_tokenizer(tokenizer_path), task, spec, text_field, dtype)


def write_spans(tokenizer: Tokenizer, task: tuple[str, tuple[Span, ...]], spec: str, text_field: str, dtype) -> str:
    """Tokenise the spans of ``task = (part file, spans)`` into the part file as ``write_shards`` would: each
    non-empty piece's tokens and, after each document that had one, the tokenizer's separator. Returns the part."""
    out, spans = task
    separator, tokens = tokenizer.separator, []
    with open(out, "wb") as part:
        for span in spans:
            started = False
            for text in span_texts(span, text_field):
                if text is None:
                    if started:
                        tokens.extend(separator)
                    started = False
                elif text:
                    try:
                        tokens.extend(tokenizer.encode(text))
                    except ValueError as error:
                        raise DataError(f"{spec}: {error}") from None
                    started = True
                if len(tokens) >= TOKENS_PER_WRITE:
                    part.write(np.asarray(tokens, dtype=dtype).tobytes())
                    tokens = []
        part.write(np.asarray(tokens, dtype=dtype).tobytes())
    return out


def _append_part(writer: SplitWriter, part: Path) -> None:
    tokens = np.memmap(part, dtype=writer.dtype, mode="r") if part.stat().st_size else np.empty(0, writer.dtype)
    for low in range(0, len(tokens), PART_BLOCK):
        writer.add(np.array(tokens[low : low + PART_BLOCK]))
    del tokens
    part.unlink()


def tokenise_in_order(tasks: Iterable, work: Callable[..., str], writer: SplitWriter, num_proc: int) -> None:
    """Run ``work`` on every task (it writes the task's part file and returns its path): in this process for one,
    else in ``num_proc`` spawned ones; append each part to ``writer`` in the order of ``tasks``. The tasks are
    drawn while the workers run (a pipe's worth ahead of them), so a generator of tasks may read the source as it
    goes."""
    if num_proc == 1:
        for task in tasks:
            _append_part(writer, Path(work(task)))
        return
    # spawned: a forked copy of a parent holding torch and a tokenizer's threads is not safe
    with multiprocessing.get_context("spawn").Pool(num_proc) as pool:
        for part in pool.imap(work, tasks):  # in task order; an error of the tasks' generator comes in its place
            _append_part(writer, Path(part))
        pool.close()  # the workers end on their own; leaving the block would terminate them
        pool.join()


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
        common = dict(path=str(path), text_field=text_field, tokenizer_path=tokenizer_path, dtype=np.dtype(dtype).name)
        tasks = [
            RowPiece(
                **common,
                start=start,
                end=min(start + rows_per_piece, rows),
                rows_per_read=rows_per_read,
                out=str(tmp / "parts" / f"{number:08d}.bin"),
            )
            for number, start in enumerate(range(0, rows, rows_per_piece))
        ]
        with SplitWriter(tmp, dtype, val_fraction, chunk_tokens) as writer:
            if num_proc == 1:
                work = functools.partial(_write_row_piece, dataset, tokenizer)
            else:
                work = tokenise_piece
            tokenise_in_order(tasks, work, writer, num_proc)
            counts = writer.finish(str(path))
        (tmp / "parts").rmdir()
        meta = shard_meta(dtype, tokenizer, counts, str(path), val_fraction, chunk_tokens)
        meta.update(
            rows=rows, text_field=text_field, tokenizer=Path(tokenizer_path).name, tokenizer_kind=tokenizer.kind
        )
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
    return Path(out_dir)


def write_text_shards(
    spec: str,
    tokenizer: Tokenizer,
    out_dir: str | Path,
    num_proc: int = 1,
    val_fraction: float = 0.05,
    chunk_tokens: int = 16384,
    text_field: str = "text",
    bytes_per_piece: int | None = None,
) -> Path:
    """Tokenise the text files ``spec`` names (a file, a folder, a glob; text, JSONL or FASTA, plain or compressed)
    into ``out_dir`` with ``num_proc`` processes (1: in this one).

    ``out_dir`` holds ``train.bin``, ``val.bin`` and ``meta.json``, byte for byte those ``write_shards`` writes for
    the same source, or nothing at all. The files are read in pieces of ``bytes_per_piece`` (default
    ``BYTES_PER_PIECE``) or more; a larger file is shared between the processes unless it is compressed or FASTA
    (one process each).

    Raises:
        DataError: one line, before anything is written, for a source that names no file or is a saved dataset
            (``write_dataset_shards`` reads those); while writing, for text the tokenizer cannot encode, a bad JSONL
            line or a source that holds no text.
    """
    if num_proc < 1:
        raise DataError(f"num_proc must be >= 1; got {num_proc}")
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be in (0, 1); got {val_fraction}")
    files = resolve_files(spec)
    if not files:
        raise DataError(f"{spec} is a saved Hugging Face dataset: write_dataset_shards tokenises it")
    dtype = token_dtype(tokenizer.vocab_size)
    with atomic_directory(Path(out_dir), replace=False) as tmp:
        parts = tmp / "parts"
        parts.mkdir()
        tasks = text_pieces(files, parts, bytes_per_piece or BYTES_PER_PIECE)
        common = dict(spec=spec, text_field=text_field, dtype=dtype)
        if num_proc == 1:
            work = functools.partial(write_spans, tokenizer, **common)
        else:
            work = functools.partial(tokenise_spans, tokenizer_path=str(tokenizer.save(parts)), **common)
        with SplitWriter(tmp, dtype, val_fraction, chunk_tokens) as writer:
            tokenise_in_order(tasks, work, writer, num_proc)
            counts = writer.finish(spec)
        shutil.rmtree(parts)  # the saved tokenizer: the shards' folder holds what write_shards writes
        meta = shard_meta(dtype, tokenizer, counts, spec, val_fraction, chunk_tokens)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
    return Path(out_dir)
