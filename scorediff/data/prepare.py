"""From a data specification and a tokenizer name to cached token shards."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from . import dna
from .examples import example_format, example_texts
from .parallel import write_dataset_shards, write_text_shards
from .shards import META_FILE, cache_key, write_shards
from .sources import EMBEDDED, DataError, is_hf_dataset, iter_text
from .tokenizers import (
    ByteTokenizer,
    CharTokenizer,
    DnaTokenizer,
    HFTokenizer,
    IntegerTokenizer,
    Tokenizer,
    gpt2_files,
    load_tokenizer,
)

TOKENIZERS = ("char", "byte", "dna", "gpt2", "bpe")
LEARNT = ("char", "bpe")
"""The tokenizers learnt from the data: their ids are the data's, and no model trained elsewhere knows them."""


def build_tokenizer(
    name: str, source: str, text_field: str = "text", bpe_vocab_size: int = 4096, num_tokens: int = 0
) -> Tokenizer:
    """``char`` / ``bpe`` learn from ``source``; ``byte``, ``dna`` and ``gpt2`` are fixed; a path is read from disk.
    A file of prompted examples: learnt from its prompts and answers, or its declared ``num_tokens`` integers; one of
    ``messages`` records needs a tokenizer with a chat template, never one learnt from it."""
    form = example_format(source)
    if form == "tokens":
        if num_tokens < 1:
            raise DataError(f"{source} holds token ids: declare their vocabulary with --data.num_tokens=N")
        return IntegerTokenizer(num_tokens)
    if form == "messages" and name in LEARNT:
        raise DataError(
            f"{source} holds messages records, which are written through a chat template; a {name} tokenizer learnt "
            "from them has none: start from an instruct model (--init MODEL) or name its tokenizer (--data.tokenizer)"
        )

    def texts():
        pieces = example_texts(source) if form == "text" else iter_text(source, text_field)
        return (piece for piece in pieces if piece)

    if name == "char":
        tokenizer = CharTokenizer.from_texts(texts())
        if len(tokenizer.chars) < 2:  # the newline it always holds, and no text
            raise DataError(f"data {source!r} holds no text")
        return tokenizer
    if name == "byte":
        return ByteTokenizer()
    if name == "dna":
        return DnaTokenizer()
    if name == "gpt2":
        return HFTokenizer.from_gpt2_files(*gpt2_files())
    if name == "bpe":
        return HFTokenizer.train_bpe(texts(), vocab_size=bpe_vocab_size)
    path = Path(name).expanduser()
    if path.is_dir() and (path / "encoder.json").exists():
        return HFTokenizer.from_gpt2_files(*gpt2_files(path))
    if path.exists():
        return _read_tokenizer(path)
    raise DataError(f"unknown tokenizer {name!r}; expected one of {list(TOKENIZERS)} or a path to a tokenizer")


def _read_tokenizer(path: Path) -> Tokenizer:
    """The tokenizer saved at a path the user named, any file that is not one refused as a ``DataError``."""
    try:
        return load_tokenizer(path)
    except ValueError as error:
        raise DataError(str(error)) from None
    except Exception as error:  # the tokenizers library reports a JSON it cannot parse as a bare Exception
        raise DataError(f"{path} is not a tokenizer the tokenizers library reads ({error})") from None


def default_cache_dir() -> Path:
    return Path(os.environ.get("SCOREDIFF_CACHE", Path.home() / ".cache" / "scorediff")) / "shards"


def prepare_shards(
    source: str,
    tokenizer: Tokenizer,
    cache_dir: str | Path | None = None,
    val_fraction: float = 0.05,
    text_field: str = "text",
    chunk_tokens: int = 16384,
    num_proc: int = 1,
) -> Path:
    """Token shards for ``source`` under ``tokenizer``, written once and reused while the files are unchanged.

    A saved Hugging Face dataset (``parallel.write_dataset_shards``) and text files, folders, globs and JSONL
    (``parallel.write_text_shards``) are tokenised by ``num_proc`` processes; the shards do not depend on
    ``num_proc``, so neither does their name. The embedded corpus is read by this process."""
    if num_proc < 1:
        raise DataError(f"num_proc must be >= 1; got {num_proc}")
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_json = Path(tokenizer.save(tmp)).read_text()
    key = cache_key(source, tokenizer_json, val_fraction, chunk_tokens, text_field)
    directory = Path(cache_dir) if cache_dir else default_cache_dir()
    target = directory / key
    if (target / META_FILE).exists():
        return target
    if source not in EMBEDDED and is_hf_dataset(Path(source).expanduser()):
        return write_dataset_shards(source, tokenizer, target, num_proc, val_fraction, chunk_tokens, text_field)
    if num_proc > 1 and source not in EMBEDDED:
        return write_text_shards(source, tokenizer, target, num_proc, val_fraction, chunk_tokens, text_field)
    return write_shards(source, tokenizer, target, val_fraction, chunk_tokens, text_field)


def prepare_dna_shards(
    source: str,
    cache_dir: str | Path | None = None,
    val_fraction: float = 0.05,
    policy: str = "split",
    label_regex: str = "",
    chunk_tokens: int = 16384,
) -> Path:
    """Base shards for the FASTA files of ``source`` (``file`` or ``name=file,name=file``), written once."""
    key = dna.cache_key(source, val_fraction, chunk_tokens, policy, label_regex)
    target = (Path(cache_dir) if cache_dir else default_cache_dir()) / key
    if (target / META_FILE).exists():
        return target
    return dna.write_dna_shards(source, target, val_fraction, chunk_tokens, policy, label_regex)
