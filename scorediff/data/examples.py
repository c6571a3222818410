"""Prompted examples, one per sequence: a JSONL file of ``prompt`` / ``answer`` texts, or of ``tokens`` / ``given``
lists over a declared integer vocabulary (``data.num_tokens``).

Each record becomes one row of ``model.seq_len`` tokens and a ``given`` mask: the prompt's positions are given
(a diffusion model never noises them, an autoregressive one does not score them), the answer's are not. A text
answer shorter than the row is padded with the tokenizer's end token (``end_token``), which is part of the
answer, so a model learns where an answer ends; no row crosses an example's boundary. The training and validation
splits are drawn by example.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..templates import encode_text
from .sources import EMBEDDED, DataError, _suffixes, jsonl_records
from .tokenizers import Tokenizer
from .windows import spread_indices

TEXT_FIELDS = ("prompt", "answer")
TOKEN_FIELDS = ("tokens", "given")


def example_format(spec: str) -> str | None:
    """``"text"`` or ``"tokens"`` when ``spec`` is one JSONL file of prompted examples (read from its first
    record), else None (a corpus: windows of one stream)."""
    path = Path(spec).expanduser()
    if spec in EMBEDDED or not path.is_file() or _suffixes(path)[0] != ".jsonl":
        return None
    first = next(jsonl_records(path), (0, {}))[1]
    if all(field in first for field in TEXT_FIELDS):
        return "text"
    if all(field in first for field in TOKEN_FIELDS):
        return "tokens"
    return None


def example_texts(spec: str) -> Iterator[str]:
    """Every prompt and answer of a text example file (to build a tokenizer from)."""
    for number, record in jsonl_records(Path(spec).expanduser()):
        yield from _text_fields(spec, number, record)


def _text_fields(spec: str, number: int, record: dict) -> tuple[str, str]:
    prompt, answer = record.get("prompt"), record.get("answer")
    if not isinstance(prompt, str) or not isinstance(answer, str):
        raise DataError(f"{spec}:{number} needs string fields 'prompt' and 'answer'")
    return prompt, answer


def _token_fields(spec: str, number: int, record: dict, num_tokens: int) -> tuple[list[int], list[bool]]:
    tokens, given = record.get("tokens"), record.get("given")
    if not (isinstance(tokens, list) and isinstance(given, list) and len(tokens) == len(given)):
        raise DataError(f"{spec}:{number} needs lists 'tokens' and 'given' of one length")
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
        raise DataError(f"{spec}:{number}: 'tokens' must be integers")
    bad = [t for t in tokens if not 0 <= t < num_tokens]
    if bad:
        raise DataError(f"{spec}:{number}: token {bad[0]} is outside the declared vocabulary 0..{num_tokens - 1}")
    if not all(isinstance(g, bool) for g in given):
        raise DataError(f"{spec}:{number}: 'given' must be true/false values")
    return tokens, given


def end_token(tokenizer: Tokenizer) -> int | None:
    """The token that pads and ends a text answer: the tokenizer's end-of-text token; for a char or byte tokenizer
    saved before it had one, the last token of its document separator (a newline), as such models were trained."""
    if tokenizer.end_id is not None:
        return tokenizer.end_id
    return tokenizer.separator[-1] if tokenizer.separator else None


def encode_example(tokenizer: Tokenizer, prompt: str, answer: str | None, seq_len: int) -> tuple[list[int], int]:
    """``prompt`` then ``answer`` as tokens, padded to ``seq_len`` with the end token (``end_token``; ``answer``
    None: the prompt alone, padded with masks to fill later), and the prompt's length; ``ValueError`` when too
    long."""
    prompt_ids = encode_text(tokenizer, prompt, seq_len)  # a huge text is refused before it is all tokenised
    answer_ids = encode_text(tokenizer, answer, seq_len) if answer is not None else []
    used = len(prompt_ids) + len(answer_ids)
    if used > seq_len or (answer is None and len(prompt_ids) >= seq_len):
        raise ValueError(f"the prompt and answer take {used} tokens; the model's context is {seq_len}")
    if not len(prompt_ids):
        raise ValueError("the prompt is empty")
    end = end_token(tokenizer)
    pad = [] if end is None else [end]
    if used < seq_len and answer is not None and not pad:
        raise ValueError(f"an answer {seq_len - used} tokens short of the context and no end token to pad it with")
    return prompt_ids + answer_ids + pad * (seq_len - used), len(prompt_ids)


def read_examples(spec: str, tokenizer: Tokenizer, seq_len: int) -> tuple[Tensor, Tensor]:
    """Every example of ``spec`` as ``(tokens, given)``: int64 and bool, shape (N, seq_len)."""
    kind = example_format(spec)
    rows, givens = [], []
    for number, record in jsonl_records(Path(spec).expanduser()):
        if kind == "text":
            try:
                tokens, prompt_length = encode_example(tokenizer, *_text_fields(spec, number, record), seq_len)
            except ValueError as error:
                raise DataError(f"{spec}:{number}: {error}") from None
            given = [True] * prompt_length + [False] * (seq_len - prompt_length)
        else:
            tokens, given = _token_fields(spec, number, record, tokenizer.vocab_size)
            if len(tokens) != seq_len:
                raise DataError(
                    f"{spec}:{number} has {len(tokens)} tokens; every record must fill model.seq_len={seq_len} "
                    f"(pad it in the file, or set --model.seq_len={len(tokens)})"
                )
            if all(given):
                raise DataError(f"{spec}:{number} gives every position: there is no answer to learn")
        rows.append(tokens)
        givens.append(given)
    if not rows:
        raise DataError(f"{spec} holds no examples")
    return torch.tensor(rows, dtype=torch.int64), torch.tensor(givens, dtype=torch.bool)


class ExampleSet:
    """Prompted examples with the interface of ``TokenWindows``: batches drawn uniformly among the examples,
    evaluation spread evenly over them. ``x_0`` (N, L) int64 and ``given`` (N, L) bool."""

    def __init__(self, tokens: Tensor, given: Tensor):
        self.tokens, self.given = tokens, given
        self.seq_len = tokens.shape[1]
        self.labels: list[str] = []
        self.meta = {"train_tokens": int(tokens.numel()), "examples": len(tokens)}

    labelled = False

    def __len__(self) -> int:
        return len(self.tokens)

    def _rows(self, index: Tensor | np.ndarray) -> dict[str, Tensor]:
        index = torch.as_tensor(index, dtype=torch.int64)
        return {"x_0": self.tokens[index], "given": self.given[index]}

    def random_examples(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        return self._rows(torch.randint(0, len(self), (batch_size,), generator=generator))

    def random_batch(self, batch_size: int, generator: torch.Generator) -> Tensor:
        return self.random_examples(batch_size, generator)["x_0"]

    def spread_examples(self, count: int | None = None) -> dict[str, Tensor]:
        """``count`` examples spread evenly over the set (all of them when None or more)."""
        return self._rows(spread_indices(len(self), count))

    def spread_windows(self, count: int | None = None) -> Tensor:
        return self.spread_examples(count)["x_0"]

    def all_examples(self, max_windows: int | None = None) -> dict[str, Tensor]:
        return self._rows(np.arange(min(len(self), len(self) if max_windows is None else int(max_windows))))


def example_splits(
    spec: str, tokenizer: Tokenizer, seq_len: int, val_fraction: float, seed: int = 0
) -> tuple[ExampleSet, ExampleSet]:
    """Training and validation examples, split by example (a seeded shuffle; at least one in each)."""
    tokens, given = read_examples(spec, tokenizer, seq_len)
    if len(tokens) < 2:
        raise DataError(f"{spec} holds {len(tokens)} example; need at least 2 to hold one out for validation")
    order = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(seed))
    held = min(len(tokens) - 1, max(1, round(len(tokens) * val_fraction)))
    val, train = order[:held], order[held:]
    return ExampleSet(tokens[train], given[train]), ExampleSet(tokens[val], given[val])
