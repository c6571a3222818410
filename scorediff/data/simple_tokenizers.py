"""The ``Tokenizer`` interface and the tokenizers that need no library: characters, bytes, DNA bases and
integer ids. ``scorediff.data.tokenizers`` re-exports them with ``load_tokenizer``."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path

from ..errors import InputError

TOKENIZER_FILE = "tokenizer.json"


class Tokenizer(ABC):
    """Text to int token ids and back."""

    kind: str
    vocab_size: int
    chat = None
    """An instruct model's chat template (``data.chat.ChatTemplate``; ``HFTokenizer`` only), else None."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; ``ValueError`` naming the first character it cannot encode."""

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str: ...

    @property
    def end_id(self) -> int | None:
        """The end-of-text token, which no text encodes to (None: the tokenizer has none)."""
        return None

    @abstractmethod
    def save(self, directory: str | Path) -> Path:
        """Write ``tokenizer.json`` into ``directory``; returns its path."""

    @property
    def separator(self) -> list[int]:
        """Tokens placed between documents when they are concatenated."""
        return self.encode("\n\n")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


class CharTokenizer(Tokenizer):
    """One token per character of a fixed alphabet and, with ``end_of_text``, an end token after them.

    Args:
        chars (Iterable[str]): the alphabet (sorted, duplicates dropped): ids ``0..len(chars) - 1``.
        end_of_text (bool): add the end token, id ``len(chars)``; False reads a tokenizer saved without one.
    """

    kind = "char"

    def __init__(self, chars: Iterable[str], end_of_text: bool = True):
        self.chars = "".join(sorted(set(chars)))
        if not self.chars:
            raise InputError("a character tokenizer needs at least one character")
        self.index = {c: i for i, c in enumerate(self.chars)}
        self.end_of_text = bool(end_of_text)
        self.vocab_size = len(self.chars) + self.end_of_text

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharTokenizer:
        chars: set[str] = set()
        for text in texts:
            chars.update(text)
        chars.add("\n")  # a prompt or template of several lines always encodes, whatever the corpus held
        return cls(chars)

    @property
    def end_id(self) -> int | None:
        return len(self.chars) if self.end_of_text else None

    @property
    def separator(self) -> list[int]:
        return [self.end_id] if self.end_of_text else super().separator

    def encode(self, text: str) -> list[int]:
        try:
            return [self.index[c] for c in text]
        except KeyError as error:
            raise InputError(
                f"character {error.args[0]!r} is not in the tokenizer's {len(self.chars)}-character vocabulary"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """The characters of ``ids``; end tokens are left out (documents joined by them run together)."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise InputError(f"token ids must be in [0, {self.vocab_size}); got {bad[0]}")
        return "".join(self.chars[i] for i in ids if i != self.end_id)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / TOKENIZER_FILE
        path.write_text(json.dumps({"type": "char", "chars": self.chars, "end_of_text": self.end_of_text}))
        return path


class ByteTokenizer(Tokenizer):
    """The 256 byte values of the UTF-8 encoding (any text can be encoded) and, with ``end_of_text``, the end
    token 256 after them (False reads a tokenizer saved without one)."""

    kind = "byte"

    def __init__(self, end_of_text: bool = True):
        self.end_of_text = bool(end_of_text)
        self.vocab_size = 256 + self.end_of_text

    @property
    def end_id(self) -> int | None:
        return 256 if self.end_of_text else None

    @property
    def separator(self) -> list[int]:
        return [256] if self.end_of_text else super().separator

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int]) -> str:
        """The UTF-8 text of ``ids``; end tokens are left out."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise InputError(f"token ids must be in [0, {self.vocab_size}); got {bad[0]}")
        return bytes(i for i in ids if i != self.end_id).decode("utf-8", errors="replace")

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / TOKENIZER_FILE
        path.write_text(json.dumps({"type": "byte", "end_of_text": self.end_of_text}))
        return path


class DnaTokenizer(Tokenizer):
    """The four bases A, C, G, T as ids 0-3 (complement: ``3 - id``); lower case (soft-masked repeats) is read as
    upper case. Any other letter (N, IUPAC ambiguity codes) cannot be encoded: the FASTA reader splits
    sequences there (see ``scorediff.data.dna``), so a window never holds a base the data did not determine."""

    kind = "dna"
    vocab_size = 4
    bases = "ACGT"
    _table = {ord(c): i for i, c in enumerate("ACGT")} | {ord(c): i for i, c in enumerate("acgt")}

    def encode(self, text: str) -> list[int]:
        ids = [self._table.get(ord(c), -1) for c in text]
        if -1 in ids:
            raise InputError(f"{text[ids.index(-1)]!r} is not a base (expected A, C, G or T)")
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < 4]
        if bad:
            raise InputError(f"base ids must be in [0, 4); got {bad[0]}")
        return "".join(self.bases[i] for i in ids)

    @property
    def separator(self) -> list[int]:
        return []  # records are kept apart by the shards' segments, not by a token

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / TOKENIZER_FILE
        path.write_text(json.dumps({"type": "dna"}))
        return path


class IntegerTokenizer(Tokenizer):
    """Tokens that are already integers ``0..vocab_size-1`` (puzzles, graphs, any non-text task); as text, the
    ids separated by spaces."""

    kind = "integer"

    def __init__(self, vocab_size: int):
        if int(vocab_size) < 1:
            raise InputError(f"an integer vocabulary needs at least one token; got vocab_size={vocab_size}")
        self.vocab_size = int(vocab_size)

    def encode(self, text: str) -> list[int]:
        try:
            ids = [int(piece) for piece in text.split()]
        except ValueError:
            raise InputError(f"expected token ids separated by spaces; got {text[:40]!r}") from None
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise InputError(f"token ids must be in [0, {self.vocab_size}); got {bad[0]}")
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(str(int(i)) for i in ids)

    @property
    def separator(self) -> list[int]:
        return []  # examples are kept apart, never concatenated

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / TOKENIZER_FILE
        path.write_text(json.dumps({"type": "integer", "vocab_size": self.vocab_size}))
        return path
