"""Where text comes from: the embedded corpus, text files, folders and globs, JSONL, FASTA, a local
Hugging Face ``datasets`` dataset. Every source streams: a corpus larger than memory is fine.

``iter_text(spec)`` yields pieces of text and ``None`` between documents; ``spans`` cuts a file into parts that
other processes read apart as ``iter_text`` reads them together.
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from .reading import DataError, _decompressing, _lines, _not_utf8, _open_text, _where

CORPORA = Path(__file__).parent / "corpora"
EMBEDDED = {"shakespeare": CORPORA / "shakespeare.txt.xz"}
TEXT_SUFFIXES = {".txt", ".md", ".text", ".jsonl", ".fa", ".fasta", ".fna", ".fas"}
# JSON Lines, one record per line; ``.json`` too, the name ``datasets``' ``to_json`` gives the JSON Lines it writes.
# A folder's ``.json`` files are not read (configs and metadata sit beside data); a glob names them.
JSONL_SUFFIXES = {".jsonl", ".json"}
FASTA_SUFFIXES = {".fa", ".fasta", ".fna", ".fas"}
PIECE_CHARS = 1 << 20  # stream large files in pieces of about this many characters
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")  # a line that may decode to a surrogate: checked
_SURROGATE = re.compile("[\ud800-\udfff]")


def _suffixes(path: Path) -> tuple[str, bool]:
    """The meaningful suffix and whether the file is compressed (``.gz`` / ``.xz``)."""
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] in (".gz", ".xz")
    if compressed:
        suffixes = suffixes[:-1]
    return (suffixes[-1] if suffixes else ""), compressed


def _plain(path: Path, piece_chars: int | None = None) -> Iterator[str | None]:
    """Pieces of about ``PIECE_CHARS`` characters, cut after a newline (or else a space) so that words stay
    whole; a file with one enormous line streams as well as one of many lines."""
    yield from _blocks(path, piece_chars)
    yield None


def _blocks(path: Path, piece_chars: int | None = None) -> Iterator[str]:
    carry, piece_chars = "", piece_chars or PIECE_CHARS
    try:
        with _decompressing(path), _open_text(path) as handle:
            while block := handle.read(piece_chars):
                text = carry + block
                cut = text.rfind("\n")
                if cut < len(text) // 2:
                    cut = max(cut, text.rfind(" "))
                cut = cut + 1 if cut >= 0 else len(text)  # no whitespace at all: cut anywhere
                carry = text[cut:]
                if cut:
                    yield text[:cut]
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    if carry:
        yield carry


def jsonl_records(path: Path, start: int = 0, end: int | None = None) -> Iterator[tuple[int, dict]]:
    """``(line number, record)`` for every non-empty line of a JSONL file, or of its bytes ``[start, end)`` (lines
    numbered from the range's first: ``_where`` names them in the file); a line that is not a JSON object is a
    ``DataError`` naming it."""
    for number, line in enumerate(_lines(path, start, end), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"{_where(path, start, number)} is not valid JSON{_one_per_line(start, number)}") from None
        except RecursionError:  # the decoder recurses once per level of nesting
            raise DataError(f"{_where(path, start, number)} nests its JSON deeper than Python can read") from None
        if not isinstance(record, dict):
            raise DataError(f"{_where(path, start, number)} is not a JSON object{_one_per_line(start, number)}")
        if _ESCAPED_SURROGATE.search(line) and (lone := _lone_surrogate(record)):
            raise DataError(f"{_where(path, start, number)} holds a lone surrogate ({lone!r}), which is not text")
        yield number, record


def _lone_surrogate(value) -> str | None:
    """The first lone surrogate in ``value``'s texts (JSON writes one as ``\\ud800``; no tokenizer encodes it)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if found := _SURROGATE.search(item):
                return found.group()
        elif isinstance(item, dict):
            stack.extend([*item.keys(), *item.values()])
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _one_per_line(start: int, number: int) -> str:
    """The hint for a file whose first line is no record: likely one JSON document, not JSON Lines."""
    return " (expected JSON Lines: one object per line)" if start == 0 and number == 1 else ""


def _jsonl(path: Path, text_field: str, start: int = 0, end: int | None = None) -> Iterator[str | None]:
    for number, record in jsonl_records(path, start, end):
        if not isinstance(record.get(text_field), str):
            where = _where(path, start, number)
            raise DataError(f"{where} has no string field {text_field!r} (set data.text_field)")
        yield record[text_field]
        yield None


def _fasta(path: Path) -> Iterator[str | None]:
    """One document per record: the sequence lines joined, the header dropped."""
    in_record = False
    for line in _lines(path):
        line = line.strip()
        if line.startswith(">"):
            if in_record:
                yield None
            in_record = True
        elif line and not line.startswith(";"):
            in_record = True
            yield line
    if in_record:
        yield None


def _hf_dataset(path: Path, text_field: str) -> Iterator[str | None]:
    from .saved_dataset import open_dataset  # it reads is_hf_dataset here

    for row in open_dataset(path, text_field):
        if row[text_field] is not None:  # a missing value: an empty document, as the parallel reader skips it
            yield row[text_field]
        yield None


def is_hf_dataset(path: Path) -> bool:
    try:
        return path.is_dir() and any((path / name).exists() for name in ("dataset_info.json", "dataset_dict.json"))
    except PermissionError:  # below a folder that cannot be searched: read as files, whose reading says so
        return False


def resolve_files(spec: str) -> list[Path]:
    """The files a data specification names, in a fixed order, each once (empty for the embedded corpus or a
    dataset)."""
    if spec in EMBEDDED:
        return [EMBEDDED[spec]]
    if not spec.strip():  # Path("") is the working folder: every text file below it
        raise DataError(f"data is empty; expected a file, a folder, a glob or an embedded corpus {sorted(EMBEDDED)}")
    path = Path(spec).expanduser()
    if any(ch in spec for ch in "*?["):
        _check_readable(glob.glob(str(path.parent), recursive=True))
        files = _each_once(Path(p) for p in sorted(glob.glob(str(path), recursive=True)) if Path(p).is_file())
        if not files:
            raise DataError(f"the pattern {spec!r} matches no files")
        return files
    if not path.exists():
        raise DataError(f"data {spec!r} is neither a file, a folder, a glob nor an embedded corpus {sorted(EMBEDDED)}")
    if path.is_dir():
        if is_hf_dataset(path):
            return []
        files = _each_once(p for p in _walk(path) if _suffixes(p)[0] in TEXT_SUFFIXES)
        if not files:
            raise DataError(f"folder {path} holds no text files (expected {', '.join(sorted(TEXT_SUFFIXES))})")
        return files
    if not path.is_file():
        raise DataError(f"data {spec!r} is not a regular file (a pipe or a device may never end)")
    return [path]


def _unreadable(error: OSError) -> DataError:
    return DataError(f"{error.filename} cannot be read ({error.strerror}); its files would be left out")


def _walk(folder: Path) -> list[Path]:
    """The regular files below ``folder``, sorted; a folder that cannot be read is an error, not skipped."""

    def unreadable(error: OSError):
        raise _unreadable(error)

    found = [Path(root) / name for root, _, names in os.walk(folder, onerror=unreadable) for name in names]
    return sorted(p for p in found if p.is_file())


def _check_readable(folders: Iterable[str]) -> None:
    """A glob skips a folder it cannot list, and with it the files the pattern meant there; say so instead."""
    for folder in folders:
        try:
            os.scandir(folder).close()
        except PermissionError as error:
            raise _unreadable(error) from None
        except OSError:  # a file the pattern's folder part matches too, or a link loop's end, which glob ends at too
            continue


def _each_once(files: Iterable[Path]) -> list[Path]:
    """``files`` in their order without a file seen before by another path (a link, or a glob's ``**`` through a
    link to a folder above, which reads one file many times)."""
    seen, once = set(), []
    for file in files:
        if (real := file.resolve()) not in seen:
            seen.add(real)
            once.append(file)
    return once


def iter_text(spec: str, text_field: str = "text") -> Iterator[str | None]:
    """Pieces of text from ``spec``, ``None`` after each document."""
    path = Path(spec).expanduser()
    if spec not in EMBEDDED and is_hf_dataset(path):
        yield from _hf_dataset(path, text_field)
        return
    for file in resolve_files(spec):
        yield from file_texts(file, text_field)


def file_texts(path: Path, text_field: str = "text", piece_chars: int | None = None) -> Iterator[str | None]:
    """Pieces of text from one file of a source, ``None`` after each document (a JSONL record, a FASTA record,
    a whole text file)."""
    suffix, _ = _suffixes(path)
    if suffix in JSONL_SUFFIXES:
        yield from _jsonl(path, text_field)
    elif suffix in FASTA_SUFFIXES:
        yield from _fasta(path)
    else:
        yield from _plain(path, piece_chars)


def fingerprint(spec: str) -> list:
    """What identifies the data: names, sizes and modification times of its files."""
    path = Path(spec).expanduser()
    if spec not in EMBEDDED and is_hf_dataset(path):
        files = sorted(p for p in path.rglob("*") if p.is_file())
    else:
        files = resolve_files(spec)
    return [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files]
