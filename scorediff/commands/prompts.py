"""``scorediff sample --prompts FILE.jsonl``: an answer for every prompt, in batches.

A diffusion model fills the answer positions (in its sampler's or in an adaptive ``--order``); an autoregressive
one continues the prompt, writing in any later given token as its position comes. Both take a batch of prompts
whatever positions each gives; only block diffusion, which continues one prefix length per batch, batches the
prompts that give the same positions. A text answer ends at the first end token, the padding it was trained with
(``ends_answers``); an adaptive order commits that token only after the answer before it (``wait_for_answers``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..data.examples import _text_fields, _token_fields, encode_example, end_token, example_format, message_prompt
from ..data.sources import jsonl_records
from ..objectives.block_diffusion import BlockDiffusionObjective
from ..sampling.options import SamplingOptions
from . import UsageError

FIELDS = {"text": ("prompt", "answer"), "messages": ("messages",), "tokens": ("tokens", "given")}
"""The fields of each kind of prompt record that the answers repeat."""


def read_prompts(
    path: str, tokenizer, length: int, reads_bos: bool = False
) -> tuple[list[dict], torch.Tensor, torch.Tensor]:
    """The records of ``path``, each with its kind's fields alone (``answer_records`` tells the kinds by their
    fields), and for each ``length`` tokens and the given mask, (N, length) each. A ``messages`` record is rendered
    by the tokenizer's chat template (``examples.message_prompt``), its leading BOS left to a model that
    ``reads_bos`` (``chat.leading_bos``)."""
    first = next(jsonl_records(Path(path)), (0, {}))[1]
    kind = example_format(path)  # None for a prompt without an answer: a text record here
    form = kind if kind in ("tokens", "messages") else "text" if "prompt" in first else None
    if form is None:
        raise UsageError(
            f"--prompts {path}: expected a JSONL file of 'prompt' records (or 'messages', or 'tokens' and 'given')"
        )
    records, rows, givens = [], [], []
    for number, record in jsonl_records(Path(path)):  # a DataError is a one-line error as it is
        if form in ("text", "messages"):
            prompt = message_prompt(path, number, record, tokenizer)[0] if form == "messages" else record.get("prompt")
            if not isinstance(prompt, str):
                _text_fields(path, number, {})  # raises the one-line error
            skip_bos = reads_bos and form == "messages"
            tokens, prompt_length = _prompt_tokens(tokenizer, prompt, length, f"{path}:{number}", skip_bos)
            given = [True] * prompt_length + [False] * (length - prompt_length)
        else:
            tokens, given = _token_fields(path, number, record, tokenizer.vocab_size)
            if len(tokens) != length:
                raise UsageError(f"{path}:{number} has {len(tokens)} tokens; the model's length is {length}")
        records.append({field: record[field] for field in FIELDS[form] if field in record})
        rows.append(tokens)
        givens.append(given)
    if not records:
        raise UsageError(f"--prompts {path} holds no prompts")
    return records, torch.tensor(rows), torch.tensor(givens)


def _prompt_tokens(tokenizer, prompt: str, length: int, where: str, skip_bos: bool) -> tuple[list[int], int]:
    try:
        ids, prompt_length = encode_example(tokenizer, prompt, None, length, skip_bos)
    except ValueError as error:
        raise UsageError(f"{where}: {error}") from None
    return ids[:prompt_length] + [0] * (length - prompt_length), prompt_length


def one_pattern_per_batch(objective) -> bool:
    """Whether ``objective`` samples only batches whose rows give the same positions: block diffusion, which
    continues one prefix for the whole batch (diffusion clamps each row's given tokens, an autoregressive model
    writes them in row by row)."""
    return isinstance(objective, BlockDiffusionObjective)


def answer_all(generate, tokens: torch.Tensor, given: torch.Tensor, batch_size: int, grouped: bool) -> torch.Tensor:
    """``generate(tokens, given)`` over batches of ``batch_size`` rows in input order, or with ``grouped`` over
    batches of rows that give the same positions; the rows in input order."""
    out = tokens.clone()
    inverse = (
        torch.unique(given, dim=0, return_inverse=True)[1] if grouped else torch.zeros(len(given), dtype=torch.int64)
    )
    for group in inverse.unique().tolist():
        rows = (inverse == group).nonzero().squeeze(-1)
        for start in range(0, len(rows), batch_size):
            picked = rows[start : start + batch_size]
            out[picked] = generate(tokens[picked], given[picked]).to(out.device)
    return out


def ends_answers(loaded) -> bool:
    """Whether ``loaded``'s text answers end at its end token (``end_token``), or run to the end of the row.

    A tokenizer with an end-of-text token ends answers there. One saved before it had one (char, byte) padded
    prompted answers with a newline: a model trained on prompted text examples (its run's ``data.source``, when
    it can still be read) ends its answers at the first newline, as before; any other (a corpus model) never
    learnt an end, so its answers are not cut.
    """
    if loaded.tokenizer.end_id is not None:
        return True
    source = loaded.config.data.source if loaded.config is not None else ""
    return bool(source) and example_format(source) == "text"


def wait_for_answers(options: SamplingOptions, loaded, anywhere: bool) -> SamplingOptions:
    """``options`` whose adaptive order commits the end token only after the answer before it
    (``SamplingOptions.end_token``), when ``loaded``'s answers end there (``ends_answers``); unchanged with
    ``anywhere`` (``--end-anywhere``, which needs an order), for an autoregressive model, or when set already."""
    if anywhere and not options.adaptive:
        raise UsageError("--end-anywhere applies with --order confidence, margin or entropy")
    if anywhere or not options.adaptive or options.end_token is not None or not ends_answers(loaded):
        return options
    end = end_token(loaded.tokenizer)
    return options if end is None else SamplingOptions.of(options, end_token=end)


def answer_text(tokenizer, row: torch.Tensor, given: torch.Tensor, cut: bool = True) -> str:
    """The answer's tokens as text, with ``cut`` cut at the first end token (``end_token``)."""
    answer = row[~given].tolist()
    end = end_token(tokenizer) if cut else None
    if end is not None and end in answer:
        answer = answer[: answer.index(end)]
    return tokenizer.decode(answer)


def answer_records(records: list[dict], tokenizer, tokens: torch.Tensor, given: torch.Tensor, cut: bool) -> str:
    """One JSON line per record: its fields, with ``answer`` (text, with ``cut`` cut at the end token) or
    ``tokens`` and ``answer`` (ids) filled; a ``messages`` record's last assistant message is its ``reference``."""
    lines = []
    for index, (record, row, known) in enumerate(zip(records, tokens, given, strict=True)):
        if "tokens" in record and "prompt" not in record:
            out = {"index": index, "tokens": row.tolist(), "given": known.tolist(), "answer": row[~known].tolist()}
        elif "messages" in record:
            messages = record["messages"]
            answered = messages[-1]["role"] == "assistant"
            out = {"index": index, "messages": messages[:-1] if answered else messages,
                   "answer": answer_text(tokenizer, row, known, cut)}  # fmt: skip
            if answered:
                out["reference"] = messages[-1]["content"]
        else:
            out = {"index": index, "prompt": record["prompt"], "answer": answer_text(tokenizer, row, known, cut)}
            if "answer" in record:
                out["reference"] = record["answer"]
        lines.append(json.dumps(out))
    return "\n".join(lines) + "\n"
