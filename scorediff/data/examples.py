"""Prompted examples, one per sequence: a JSONL file of ``prompt`` / ``answer`` texts, of ``messages``
conversations written through the model's chat template, or of ``tokens`` / ``given`` lists over a declared integer
vocabulary (``data.num_tokens``). One file holds one kind of record.

Each record becomes one row of ``model.seq_len`` tokens and a ``given`` mask: the prompt's positions are given
(a diffusion model never noises them, an autoregressive one does not score them), the answer's are not. A text
answer shorter than the row is padded with the tokenizer's end token (``end_token``), which is part of the
answer, so a model learns where an answer ends; no row crosses an example's boundary. The training and validation
splits are drawn by example.

A ``messages`` record is a conversation whose last message is the assistant's (``message_texts``): its prompt is the
template's rendering of the messages before it, opening the assistant's turn; its answer is what the whole
conversation's rendering adds after that, the template's end-of-turn markup included. Earlier assistant turns are
part of the prompt, given; only the last is learnt.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from ..templates import encode_text
from .chat import check_messages, leading_bos
from .sources import EMBEDDED, JSONL_SUFFIXES, DataError, _suffixes, jsonl_records
from .tokenizers import Tokenizer
from .windows import spread_indices

TEXT_FIELDS = ("prompt", "answer")
TOKEN_FIELDS = ("tokens", "given")
MESSAGES_FIELD = "messages"


def example_format(spec: str) -> str | None:
    """``"text"``, ``"messages"`` or ``"tokens"`` when ``spec`` is one JSONL file of prompted examples (read from
    its first record), else None (a corpus: windows of one stream)."""
    path = Path(spec).expanduser()
    if spec in EMBEDDED or not path.is_file() or _suffixes(path)[0] not in JSONL_SUFFIXES:
        return None
    return record_format(next(jsonl_records(path), (0, {}))[1])


def record_format(record: dict) -> str | None:
    """The kind of prompted example ``record`` is, judged by its fields: ``"text"``, ``"messages"``, ``"tokens"``."""
    if all(field in record for field in TEXT_FIELDS):
        return "text"
    if MESSAGES_FIELD in record:
        return "messages"
    if all(field in record for field in TOKEN_FIELDS):
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


def message_texts(spec: str, number: int, record: dict, tokenizer: Tokenizer) -> tuple[str, str]:
    """The prompt and answer texts of a ``messages`` record: the template's rendering of every message before the
    last with ``add_generation_prompt``, and what the rendering of them all adds after it.

    Raises:
        DataError: the tokenizer has no template, the messages are not role/content texts, the last is not the
            assistant's, the whole rendering does not begin with the prompt's, or adds nothing for a non-empty
            answer (one line naming ``spec:number``).
    """
    messages = _messages(spec, number, record, tokenizer)
    if messages[-1]["role"] != "assistant":
        raise DataError(f"{spec}:{number}: the last message must be the assistant's; got {messages[-1]['role']!r:.40}")
    if len(messages) < 2:
        raise DataError(f"{spec}:{number}: 'messages' must list at least one message before the assistant's answer")
    prompt = _rendered(spec, number, tokenizer, messages[:-1], True)
    whole = _rendered(spec, number, tokenizer, messages, False)
    if not whole.startswith(prompt):
        raise DataError(
            f"{spec}:{number}: the chat template's rendering of the whole conversation does not begin with its "
            "rendering of the prompt (the messages before the last, with add_generation_prompt), so the answer "
            "cannot be cut from it"
        )
    if whole == prompt and messages[-1]["content"]:  # a template that leaves the assistant's turn out
        raise DataError(f"{spec}:{number}: the chat template leaves the assistant's message out: the answer is empty")
    return prompt, whole[len(prompt) :]


def message_prompt(spec: str, number: int, record: dict, tokenizer: Tokenizer) -> tuple[str, str | None]:
    """The prompt of a ``messages`` record to answer (``sample --prompts``), and the reference answer: a last
    assistant message is the reference and the prompt is the rest, else the prompt is the whole conversation; both
    rendered with ``add_generation_prompt``. ``DataError`` as for ``message_texts``."""
    messages = _messages(spec, number, record, tokenizer)
    reference = messages[-1]["content"] if messages[-1]["role"] == "assistant" else None
    conversation = messages[:-1] if reference is not None else messages
    if not conversation:
        raise DataError(f"{spec}:{number}: 'messages' holds no message before the assistant's to answer")
    return _rendered(spec, number, tokenizer, conversation, True), reference


def _messages(spec: str, number: int, record: dict, tokenizer: Tokenizer) -> list[dict]:
    """The checked ``messages`` of a record, for a tokenizer that has a chat template (else one ``DataError``)."""
    if getattr(tokenizer, "chat", None) is None:
        raise DataError(
            f"{spec}:{number}: messages records need the chat template of the model's tokenizer; its {tokenizer.kind} "
            "tokenizer has none (an instruct model's tokenizer_config.json, chat_template.jinja or GGUF file has one)"
        )
    if MESSAGES_FIELD not in record:
        kind = f"is a {record_format(record)} record" if record_format(record) else "has no 'messages' list"
        raise DataError(f"{spec}:{number} {kind} in a file of messages records; one file holds one kind")
    messages = record[MESSAGES_FIELD]
    try:
        check_messages(messages)
    except InputError as error:
        raise DataError(f"{spec}:{number}: {error}") from None
    return messages


def _rendered(spec: str, number: int, tokenizer: Tokenizer, messages: list[dict], generation_prompt: bool) -> str:
    try:
        return tokenizer.chat.render(messages, add_generation_prompt=generation_prompt)
    except InputError as error:  # the template failed or raised (one line)
        raise DataError(f"{spec}:{number}: {error}") from None


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


def encode_example(
    tokenizer: Tokenizer, prompt: str, answer: str | None, seq_len: int, skip_bos: bool = False
) -> tuple[list[int], int]:
    """``prompt`` then ``answer`` as tokens, padded to ``seq_len`` with the end token (``end_token``; ``answer``
    None: the prompt alone, padded with masks to fill later), and the prompt's length; ``ValueError`` when too
    long. With ``skip_bos`` (a prompt rendered by the chat template, for a model that reads its own BOS), a leading
    ``bos_token`` is left to the model's own BOS (``chat.leading_bos``)."""
    # a huge text is refused before it is tokenised; that check's margin of 8 tokens covers a leading BOS dropped below
    prompt_ids = encode_text(tokenizer, prompt, seq_len)
    prompt_ids = prompt_ids[leading_bos(tokenizer, prompt_ids, skip_bos) :]
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


def read_examples(spec: str, tokenizer: Tokenizer, seq_len: int, reads_bos: bool = False) -> tuple[Tensor, Tensor]:
    """Every example of ``spec`` as ``(tokens, given)``: int64 and bool, shape (N, seq_len). ``reads_bos``: the rows
    are for a model that reads its own BOS (``chat.reads_own_bos``; see ``chat.leading_bos``)."""
    kind = example_format(spec)
    rows, givens = [], []
    for number, record in jsonl_records(Path(spec).expanduser()):
        form = record_format(record)
        if form is not None and form != kind:
            raise DataError(f"{spec}:{number} is a {form} record in a file of {kind} records; one file holds one kind")
        if kind in ("text", "messages"):
            messages = kind == "messages"
            texts = message_texts(spec, number, record, tokenizer) if messages else _text_fields(spec, number, record)
            try:
                tokens, prompt_length = encode_example(tokenizer, *texts, seq_len, skip_bos=reads_bos and messages)
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
    spec: str, tokenizer: Tokenizer, seq_len: int, val_fraction: float, seed: int = 0, reads_bos: bool = False
) -> tuple[ExampleSet, ExampleSet]:
    """Training and validation examples, split by example (a seeded shuffle; at least one in each);
    ``reads_bos`` as for ``read_examples``."""
    tokens, given = read_examples(spec, tokenizer, seq_len, reads_bos)
    if len(tokens) < 2:
        raise DataError(f"{spec} holds {len(tokens)} example; need at least 2 to hold one out for validation")
    order = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(seed))
    held = min(len(tokens) - 1, max(1, round(len(tokens) * val_fraction)))
    val, train = order[:held], order[held:]
    return ExampleSet(tokens[train], given[train]), ExampleSet(tokens[val], given[val])
