"""Text files cut into parts that several processes read apart, each as one process reads it in the whole file.

``file_spans`` cuts a file into ``Span`` parts (JSONL between lines, other text between the pieces one process
reads, a compressed or FASTA file whole), ``text_pieces`` gathers them into the tasks of workers, and ``span_texts``
reads one in a worker, refusing a file that changed since it was cut.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import sources  # PIECE_CHARS read when a file is cut: the writing process's, whatever a worker's is
from .reading import _bad_byte, _changed
from .sources import FASTA_SUFFIXES, JSONL_SUFFIXES, _blocks, _jsonl, _suffixes, file_texts


@dataclass(frozen=True)
class Span:
    """A part of one file that one process reads (``span_texts``) as ``iter_text`` reads it in the whole file.

    Attributes:
        path: the file.
        file_size: its size in bytes when it was cut, which ``span_texts`` checks before and after reading it.
        mtime_ns: its modification time when it was cut, checked too: a file that changed would read as other text.
        start: its first byte.
        end: the byte after its last; ``None`` for the whole file.
        blocks: for a part of a text file, the byte lengths of the pieces ``_blocks`` cuts there.
        last: a part of a text file that ends it, and so ends its document.
        piece_chars: the characters ``_blocks`` reads at a time in a whole text file (``None``: ``PIECE_CHARS``
            of the reading process); the writing process's, so that every process cuts where it would.
    """

    path: str
    file_size: int
    mtime_ns: int
    start: int = 0
    end: int | None = None
    blocks: tuple[int, ...] = ()
    last: bool = True
    piece_chars: int | None = None

    @property
    def size(self) -> int:
        return self.file_size if self.end is None else self.end - self.start

    def check_unchanged(self) -> None:
        """A one-line ``DataError`` unless the file has the size and modification time it had when it was cut."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            raise _changed(self.path) from None
        if (stat.st_size, stat.st_mtime_ns) != (self.file_size, self.mtime_ns):
            raise _changed(self.path)


def file_spans(path: Path, span_bytes: int) -> Iterator[Span]:
    """``path`` in parts of about ``span_bytes`` bytes or more, in order.

    JSONL is cut after a newline (a record never straddles two parts). Other text is cut between the pieces
    ``_blocks`` cuts, since tokens depend on where the text is cut: this reads the file once here, the pieces'
    byte lengths travel with each part, and the tokens of the parts are those of the whole. A compressed file,
    which cannot be read from the middle, and FASTA are one part each, as is a file of ``span_bytes`` or less.
    """
    stat = path.stat()  # before reading: a change while this reads is seen by the worker
    name, suffix, compressed = str(path), *_suffixes(path)
    stamp = {"file_size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if compressed or suffix in FASTA_SUFFIXES or stat.st_size <= span_bytes:
        yield Span(name, **stamp, piece_chars=sources.PIECE_CHARS)
    elif suffix in JSONL_SUFFIXES:
        yield from (Span(name, **stamp, start=start, end=end) for start, end in _line_ranges(path, span_bytes))
    else:
        groups = _block_groups(path, span_bytes)
        previous = next(groups, None)
        for group in groups:
            yield Span(name, **stamp, **previous, last=False)
            previous = group
        if previous:
            yield Span(name, **stamp, **previous, last=True)


def _line_ranges(path: Path, span_bytes: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` byte ranges of ``path``, each of ``span_bytes`` or more that ends after a ``\\n`` (the
    first that allows it) or at the end of the file."""
    size, start = path.stat().st_size, 0
    with open(path, "rb") as handle:
        while start < size:
            end = handle.seek(start + span_bytes - 1)
            while end < size and (block := handle.read(1 << 20)):
                found = block.find(b"\n")
                if found >= 0:
                    end += found + 1
                    break
                end += len(block)
            end = min(end, size)
            yield start, end
            start = end


def _block_groups(path: Path, span_bytes: int) -> Iterator[dict]:
    """``start``, ``end`` and ``blocks`` (byte lengths) of runs of the pieces ``_blocks`` cuts, each run
    ``span_bytes`` or more."""
    start, end, lengths = 0, 0, []
    for block in _blocks(path):
        lengths.append(len(block.encode()))
        end += lengths[-1]
        if end - start >= span_bytes:
            yield {"start": start, "end": end, "blocks": tuple(lengths)}
            start, lengths = end, []
    if lengths:
        yield {"start": start, "end": end, "blocks": tuple(lengths)}


def span_texts(span: Span, text_field: str = "text") -> Iterator[str | None]:
    """Pieces of text of ``span``, ``None`` after each document it ends: those ``iter_text`` yields there.

    Raises:
        DataError: one line, when the file changed since it was cut (``Span.check_unchanged``, before and after
            reading) or holds what one process refuses there, in the words of one process.
    """
    path = Path(span.path)
    span.check_unchanged()
    if span.end is None:
        yield from file_texts(path, text_field, span.piece_chars)
    elif span.blocks:
        yield from _span_blocks(span)
    else:
        yield from _jsonl(path, text_field, span.start, span.end)
    span.check_unchanged()  # a change while the span was read
    if span.blocks and span.last:
        yield None


def _span_blocks(span: Span) -> Iterator[str]:
    with open(span.path, "rb") as handle:
        offset = handle.seek(span.start)
        for length in span.blocks:  # the bytes of a piece the parent decoded: whole characters
            data = handle.read(length)
            if len(data) < length:
                raise _changed(span.path)
            try:
                text = data.decode()
            except UnicodeDecodeError as error:  # a file rewritten with its size and modification time kept
                raise _bad_byte(span.path, data[error.start], offset + error.start) from None
            yield text
            offset += length


def text_pieces(files: Iterable[Path], parts: Path, bytes_per_piece: int) -> Iterator[tuple[str, tuple[Span, ...]]]:
    """``(part file, spans)``: the files cut into spans (``file_spans``) and gathered, in order, into pieces
    of ``bytes_per_piece`` or more, so that a folder of many small files is not a task per file."""
    spans, size, number = [], 0, 0
    for file in files:
        for span in file_spans(file, bytes_per_piece):
            spans.append(span)
            size += span.size
            if size >= bytes_per_piece:
                yield str(parts / f"{number:08d}.bin"), tuple(spans)
                spans, size, number = [], 0, number + 1
    if spans:
        yield str(parts / f"{number:08d}.bin"), tuple(spans)
