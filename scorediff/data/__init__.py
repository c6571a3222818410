"""Tokenizers, text sources, token shards and windows."""

from .parallel import write_dataset_shards
from .shards import cache_key, write_shards
from .sources import EMBEDDED, DataError, iter_text, resolve_files
from .tokenizers import ByteTokenizer, CharTokenizer, HFTokenizer, Tokenizer, gpt2_files, load_tokenizer
from .windows import TokenWindows

__all__ = [
    "EMBEDDED",
    "ByteTokenizer",
    "CharTokenizer",
    "DataError",
    "HFTokenizer",
    "TokenWindows",
    "Tokenizer",
    "cache_key",
    "gpt2_files",
    "iter_text",
    "load_tokenizer",
    "resolve_files",
    "write_dataset_shards",
    "write_shards",
]
