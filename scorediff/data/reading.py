"""Reading a data file's bytes, text and lines, compressed (``.gz``, ``.xz``) or not, with the one-line errors a
damaged or non-UTF-8 file gives: each names the file, and a line or byte offset in it."""

from __future__ import annotations

import contextlib
import gzip
import lzma
import zlib
from collections.abc import Iterator
from pathlib import Path

from ..errors import ScorediffError


class DataError(ScorediffError):
    """The data the user pointed at cannot be used; the message says what was expected and what came."""


def _open_text(path: Path):
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    if suffix == ".xz":
        return lzma.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _open_binary(path: Path):
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rb")
    if suffix == ".xz":
        return lzma.open(path, "rb")
    return open(path, "rb")


@contextlib.contextmanager
def _decompressing(path: Path):
    """A compressed file cut short or damaged, or not compressed at all, as one ``DataError`` naming it."""
    try:
        yield
    except (EOFError, lzma.LZMAError, gzip.BadGzipFile, zlib.error) as error:
        kind = "gzip" if path.suffix.lower() == ".gz" else "xz"
        raise DataError(f"{path} is not a complete {kind} file ({error})") from None


def _not_utf8(path: Path) -> DataError:
    """The first byte of ``path``'s text (uncompressed) that is not UTF-8, named by its offset in the file: a
    decoder reading blocks ahead tells only its offset in a block, which depends on where the reading started."""
    offset, carry = 0, b""
    with _decompressing(path), _open_binary(path) as handle:
        while block := handle.read(1 << 20):
            data = carry + block
            try:
                data.decode()
            except UnicodeDecodeError as error:
                if error.reason != "unexpected end of data":  # not a character the block's end cut
                    return _bad_byte(path, data[error.start], offset + error.start)
                carry, offset = data[error.start :], offset + error.start
            else:
                carry, offset = b"", offset + len(data)
    if carry:
        return _bad_byte(path, carry[0], offset)
    return _changed(path)


def _bad_byte(where: Path | str, byte: int, offset: int) -> DataError:
    return DataError(f"{where} is not UTF-8 text: byte 0x{byte:02x} at offset {offset}")


def _changed(path: Path | str) -> DataError:
    return DataError(f"{path} changed while it was being prepared; run again")


def _lines(path: Path, start: int = 0, end: int | None = None) -> Iterator[str]:
    """The lines of ``path`` (split at any newline, kept as they are); with ``end``, those of its bytes ``[start,
    end)``, a range that starts and ends after a ``\\n`` (as ``_line_ranges`` cuts them). Each line is decoded
    alone, so a line that is not UTF-8 is named by its line and offset in the file, whatever the range, and after
    the lines before it (a bad JSON line before it is the error)."""
    offset = start
    for number, line in enumerate(_raw_lines(path, start, end), start=1):
        try:
            text = line.decode()
        except UnicodeDecodeError as error:
            raise _bad_byte(_where(path, start, number), line[error.start], offset + error.start) from None
        yield text
        offset += len(line)


def _raw_lines(path: Path, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    """The lines of ``_lines``, undecoded: split at ``\\n``, ``\\r\\n`` or ``\\r`` as text read with
    ``newline=""`` is."""
    with _decompressing(path), _open_binary(path) as handle:
        if start:
            handle.seek(start)
        left = float("inf") if end is None else end - start
        while left > 0 and (line := handle.readline()):
            left -= len(line)
            yield from line.splitlines(keepends=True) if b"\r" in line else (line,)


def _where(path: Path, start: int, number: int) -> str:
    """``path:line`` of line ``number`` of the range that starts at byte ``start``; the lines before the range are
    counted only here, when a line is wrong, so that reading a range never reads the file before it."""
    before = sum(1 for _ in _raw_lines(path, 0, start)) if start else 0
    return f"{path}:{before + number}"
