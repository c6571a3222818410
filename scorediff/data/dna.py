"""Genomes in: FASTA records as runs of bases, labels per file or per record, shards that keep records apart.

Policy for letters other than A, C, G, T (``data.dna_policy``):

- ``split`` (default): N and the IUPAC ambiguity codes end a run of bases; a window never crosses them.
- ``skip``: they are dropped and the bases on either side joined.
- ``strict``: any of them is an error naming the file, the record and the letter.

Lower case (soft-masked repeats) is read as upper case. No window spans two records: each record's runs are cut
into chunks of ``chunk_tokens`` bases, a chunk goes to training or validation by a fixed hash of its index, and
the shards list every chunk as a segment ``(start, length, label)`` of the split's token file.

Labels for conditional models: ``name=file`` in the source (``ecoli=a.fa.gz,saureus=b.fa.gz``) labels every
record of a file; ``data.label_regex`` takes the label from each record's header instead (its first group, or
the whole match).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..fileio import atomic_directory
from .reading import _lines
from .shards import META_FILE, _goes_to_validation
from .sources import DataError, resolve_files

POLICIES = ("split", "skip", "strict")
_BASES = re.compile(r"[ACGTacgt]+")
_NOT_BASE = re.compile(r"[^ACGTacgt]")


def parse_sources(source: str) -> list[tuple[str | None, str]]:
    """``"ecoli=a.fa,saureus=b.fa"`` -> ``[("ecoli", "a.fa"), ("saureus", "b.fa")]``; ``"a.fa"`` ->
    ``[(None, "a.fa")]``."""
    out = []
    for part in source.split(","):
        name, sep, path = part.partition("=")
        if not sep:
            name, path = None, part
        elif not name or not re.fullmatch(r"[\w.+-]+", name):
            raise DataError(f"a label must be letters, digits or ._+-; got {name!r} in {part!r}")
        out.append((name, path))
    named = [name is not None for name, _ in out]
    if any(named) and not all(named):
        raise DataError(f"label every file or none (name=file,name=file); got {source!r}")
    return out


def fasta_records(path: Path) -> Iterator[tuple[str, str]]:
    """``(header, sequence)`` of each record, the sequence's lines joined; text before the first header is
    refused, comment lines (``;``) skipped."""
    header, lines = None, []
    for number, line in enumerate(_lines(path), start=1):
        line = line.strip()
        if line.startswith(">"):
            if header is not None:
                yield header, "".join(lines)
            header, lines = line[1:].strip(), []
        elif line and not line.startswith(";"):
            if header is None:
                raise DataError(f"{path}:{number}: expected a FASTA header ('>name') before the sequence")
            lines.append(line)
    if header is not None:
        yield header, "".join(lines)


def runs_of_bases(sequence: str, policy: str, where: str) -> list[str]:
    """The stretches of ``sequence`` that hold only A, C, G, T under ``policy`` (see the module docstring)."""
    if policy == "split":
        return _BASES.findall(sequence)
    bad = _NOT_BASE.search(sequence)
    if bad is None:
        return [sequence] if sequence else []
    if policy == "strict":
        raise DataError(
            f"{where}: {bad.group()!r} at base {bad.start() + 1} is not A, C, G or T (data.dna_policy=strict)"
        )
    return [_NOT_BASE.sub("", sequence)] if policy == "skip" else []


def _label_of(header: str, name: str | None, pattern: re.Pattern | None, where: str) -> str | None:
    if name is not None or pattern is None:
        return name
    found = pattern.search(header)
    if found is None:
        raise DataError(f"{where}: data.label_regex {pattern.pattern!r} does not match the header {header[:60]!r}")
    return found.group(1) if pattern.groups else found.group()


def labelled_runs(
    source: str, policy: str = "split", label_regex: str = "", seen: dict | None = None
) -> Iterator[tuple[str | None, str]]:
    """``(label, run of bases)`` for every run of every record of every file ``source`` names; ``seen["records"]``
    counts the records read."""
    seen = {} if seen is None else seen
    seen.setdefault("records", 0)
    if policy not in POLICIES:
        raise DataError(f"data.dna_policy must be one of {list(POLICIES)}; got {policy!r}")
    pattern = re.compile(label_regex) if label_regex else None
    for name, spec in parse_sources(source):
        for path in resolve_files(spec):
            for header, sequence in fasta_records(path):
                seen["records"] += 1
                where = f"{path} record {header[:40]!r}"
                label = _label_of(header, name, pattern, where)
                for run in runs_of_bases(sequence, policy, where):
                    yield label, run


def fingerprint(source: str) -> list:
    files = [path for _, spec in parse_sources(source) for path in resolve_files(spec)]
    return [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def cache_key(source: str, val_fraction: float, chunk_tokens: int, policy: str, label_regex: str) -> str:
    payload = json.dumps(["dna", 1, source, fingerprint(source), val_fraction, chunk_tokens, policy, label_regex])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def write_dna_shards(
    source: str,
    out_dir: str | Path,
    val_fraction: float = 0.05,
    chunk_tokens: int = 16384,
    policy: str = "split",
    label_regex: str = "",
) -> Path:
    """Tokenise the FASTA files of ``source`` into ``out_dir``: ``{split}.bin`` (uint8 bases),
    ``{split}.segments.npy`` (int64 rows ``start, length, label``; label -1 when unlabelled) and ``meta.json``
    (with ``labels``, the names in order of first appearance, and the training split's ``base_counts``)."""
    out_dir = Path(out_dir)
    table = np.full(256, 255, dtype=np.uint8)
    for i, base in enumerate("ACGT"):
        table[ord(base)] = table[ord(base.lower())] = i
    with atomic_directory(out_dir, replace=False) as tmp:
        segments: dict[str, list[tuple[int, int, int]]] = {"train": [], "val": []}
        counts = {"train": 0, "val": 0}
        labels: dict[str, int] = {}
        seen = {"records": 0}
        with open(tmp / "train.bin", "wb") as train, open(tmp / "val.bin", "wb") as val:
            files, index = {"train": train, "val": val}, 0
            for label, run in labelled_runs(source, policy, label_regex, seen):
                label_id = -1 if label is None else labels.setdefault(label, len(labels))
                tokens = table[np.frombuffer(run.encode("ascii"), dtype=np.uint8)]
                for start in range(0, len(tokens), chunk_tokens):
                    split = "val" if _goes_to_validation(index, val_fraction) else "train"
                    chunk = tokens[start : start + chunk_tokens]
                    files[split].write(chunk.tobytes())
                    segments[split].append((counts[split], len(chunk), label_id))
                    counts[split] += len(chunk)
                    index += 1
        if counts["train"] + counts["val"] == 0:
            what = "no bases (only N or other letters than A, C, G, T)" if seen["records"] else "no FASTA record"
            raise DataError(f"data {source!r} holds {what}")
        if not segments["train"] or not segments["val"]:
            _split_each_segment(tmp, segments, counts, val_fraction)
        for split, rows in segments.items():
            np.save(tmp / f"{split}.segments.npy", np.asarray(rows, dtype=np.int64).reshape(-1, 3))
        base_counts = np.bincount(np.fromfile(tmp / "train.bin", dtype=np.uint8), minlength=4)[:4]
        meta = {
            "format": 1,
            "dtype": "uint8",
            "vocab_size": 4,
            "train_tokens": counts["train"],
            "val_tokens": counts["val"],
            "source": source,
            "val_fraction": val_fraction,
            "chunk_tokens": chunk_tokens,
            "dna_policy": policy,
            "labels": list(labels),
            "base_counts": [int(c) for c in base_counts],
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
    return out_dir


def _split_each_segment(directory: Path, segments: dict, counts: dict, val_fraction: float) -> None:
    """Too few chunks for the hash to fill both splits: the last ``val_fraction`` of every segment is held out."""
    tokens = {s: np.fromfile(directory / f"{s}.bin", dtype=np.uint8) for s in ("train", "val")}
    pieces = {"train": [], "val": []}
    new = {"train": [], "val": []}
    for split in ("train", "val"):
        for start, length, label in segments[split]:
            cut = max(1, min(length - 1, round(length * (1 - val_fraction)))) if length > 1 else length
            for part, lo, hi in (("train", start, start + cut), ("val", start + cut, start + length)):
                if hi > lo:
                    new[part].append((sum(len(p) for p in pieces[part]), hi - lo, label))
                    pieces[part].append(tokens[split][lo:hi])
    for split in ("train", "val"):
        data = np.concatenate(pieces[split]) if pieces[split] else np.zeros(0, dtype=np.uint8)
        data.tofile(directory / f"{split}.bin")
        segments[split], counts[split] = new[split], len(data)


def reverse_complement(x: Tensor) -> Tensor:
    """The reverse complement of base ids (..., L): reversed, A <-> T and C <-> G."""
    return 3 - x.flip(-1)


def random_reverse_complement(x: Tensor, generator: torch.Generator) -> Tensor:
    """Each row replaced by its reverse complement with probability 1/2 (augmentation: DNA has two strands)."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(flip[:, None], reverse_complement(x), x)
