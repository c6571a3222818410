"""``scorediff chat``: an instruct model's answer to a message, written through the model's own chat template.

The message (after an optional system message) is rendered by the template the model's tokenizer ships
(``scorediff.data.chat``), and the model writes up to ``--length`` tokens after it: an autoregressive model left to
right, a diffusion model filling them (an adaptive ``--order`` commits the end token only after the answer before
it). The answer is cut at the first end token.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from ..data.chat import conversation, leading_bos, reads_own_bos
from ..templates import gap
from . import UsageError, atomic_write, positive
from .generate import _common, _generate, _load, _max_length, _record
from .prompts import answer_text, wait_for_answers
from .sampling_options import sampling_options


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "chat",
        help="answer a message with an instruct model, through its chat template",
        description='An instruct model\'s answer: scorediff chat --checkpoint MODEL "What is a diffusion model?". '
        "The model's tokenizer must have a chat template (tokenizer_config.json, chat_template.jinja or GGUF).",
    )
    parser.add_argument("message", help="the user's message")
    _common(parser)
    parser.add_argument("--system", help="a system message before it (default: the template's own, if any)")
    parser.add_argument("--length", type=int, default=128, help="tokens of answer at most (default: 128)")
    parser.set_defaults(run=run_chat)


def run_chat(args: argparse.Namespace) -> int:
    positive("--length", args.length)
    if args.trajectory:
        raise UsageError("--trajectory applies to sample and infill")
    loaded = _load(args)
    chat = loaded.tokenizer.chat
    if chat is None:
        raise UsageError(
            f"{loaded.source or loaded.path} has no chat template (an instruct model's tokenizer_config.json, "
            "chat_template.jinja or GGUF file has one); use infill --prefix to continue text"
        )
    prompt = chat.render(conversation(args.message, args.system))
    tokens, given = gap(prompt, args.length, "", loaded.tokenizer, _max_length(loaded))
    skip = leading_bos(loaded.tokenizer, tokens, reads_own_bos(loaded.kind, loaded.model.config))
    tokens, given = tokens[skip:], given[skip:]
    condition = (
        torch.tensor(tokens, device=args.device).expand(args.num_samples, -1),
        torch.tensor(given, device=args.device).expand(args.num_samples, -1),
    )
    options = wait_for_answers(sampling_options(args, loaded), loaded, anywhere=False)
    rows, _ = _generate(args, loaded, len(tokens), condition=condition, options=options)
    answers = [answer_text(loaded.tokenizer, row, condition[1][0].cpu()) for row in rows.cpu()]
    _write(args, loaded, answers)
    return 0


def _write(args, loaded, answers: list[str]) -> None:
    if args.format == "jsonl":
        record = {"message": args.message, "system": args.system, "seed": args.seed, **_record(args, loaded)}
        output = "".join(json.dumps({"index": i, "answer": a, **record}) + "\n" for i, a in enumerate(answers))
    elif len(answers) == 1:
        output = answers[0] + "\n"
    else:
        output = "\n\n".join(f"--- answer {i + 1} ---\n{a}" for i, a in enumerate(answers)) + "\n"
    if args.out:
        atomic_write(args.out, output)
        print(f"wrote {len(answers)} answer(s) to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(output)
