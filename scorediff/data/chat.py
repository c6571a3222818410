"""Chat templates: how an instruct model's conversation is written out as the text it was trained on.

An instruct model (SmolLM2-Instruct, LLaDA-Instruct, Dream-Instruct) ships a Jinja template with its tokenizer:
``chat_template.jinja`` or the ``chat_template`` of ``tokenizer_config.json`` in a Hugging Face folder,
``tokenizer.chat_template`` in a GGUF file. Rendered over a list of messages (``{"role", "content"}``) with
``add_generation_prompt``, it gives the prompt after which the model writes the assistant's turn. The template
comes from a downloaded file, so it runs in Jinja's immutable sandbox (no attribute of Python objects beyond
the safe ones, no mutation of the messages), within a budget of steps, seconds and sizes (``template_sandbox``) so
that a template that loops or grows without end is refused, and with the environment transformers gives templates:
blocks trimmed, ``loopcontrols``, a ``tojson`` filter and ``raise_exception``. A run saves the template of the
tokenizer it trained with, so a model fine-tuned or adapted from an instruct model keeps chatting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

TEMPLATE_FILE = "chat_template.jinja"
"""The template's own file in a folder (transformers' layout since 4.43)."""
CONFIG_FILE = "tokenizer_config.json"
"""transformers' tokenizer settings: ``bos_token``, ``eos_token`` and perhaps ``chat_template``."""


@dataclass(frozen=True)
class ChatTemplate:
    """A chat template and the special tokens it may name (``bos_token``, ``eos_token``)."""

    source: str
    """The Jinja text."""
    bos_token: str | None = None
    eos_token: str | None = None

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The conversation ``messages`` (each ``{"role": ..., "content": ...}``) as the model's text, ending with
        the opening of the assistant's turn when ``add_generation_prompt``.

        Raises:
            InputError: messages that are not role/content mappings, or a template that fails or raises (one line).
        """
        check_messages(messages)
        from .template_sandbox import render_template  # jinja2 is imported when a template is rendered, not before

        try:
            return render_template(
                self.source,
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token or "",
                eos_token=self.eos_token or "",
            )
        except Exception as error:  # the template is code from the model's folder: what it raises is its failure
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise InputError(f"the model's chat template cannot be rendered: {first}") from None


def check_messages(messages) -> None:
    """Refuse (``InputError``) anything but a non-empty list of ``{"role": str, "content": str}``."""
    if not isinstance(messages, list) or not messages:
        raise InputError(f"a conversation is a non-empty list of messages; got {messages!r:.80}")
    for message in messages:
        if not isinstance(message, dict) or not all(isinstance(message.get(k), str) for k in ("role", "content")):
            raise InputError(f'each message is {{"role": text, "content": text}}; got {message!r:.80}')


def reads_own_bos(objective: str, model_config) -> bool:
    """Whether the network reads a BOS of its own before every sequence: an autoregressive one, and a shifted llama
    (``model.shift``), whose first token is predicted from it; adapted from an AR model, both BOS rows are a copy of
    the original's BOS embedding (``converters.llama_layout.causal_model``, ``training.adapt``)."""
    return objective == "autoregressive" or bool(getattr(model_config, "shift", False))


def leading_bos(tokenizer, tokens: list[int], reads_bos: bool) -> int:
    """How many of a rendered prompt's first ``tokens`` to leave out: 1 when the model that is to read them
    ``reads_bos`` (``reads_own_bos``) and they begin with the template's ``bos_token``, else 0: a prompt that
    begins with it gives it once, as the original model reads it. ``scorediff chat`` and the ``messages`` records
    of ``data.examples`` both follow this rule."""
    chat = getattr(tokenizer, "chat", None)
    if not reads_bos or not tokens or chat is None or not chat.bos_token or not hasattr(tokenizer, "tokenizer"):
        return 0
    return int(tokens[0] == tokenizer.tokenizer.token_to_id(chat.bos_token))


def conversation(text: str, system: str | None = None) -> list[dict]:
    """One user message, after a system message when ``system`` is given."""
    head = [{"role": "system", "content": system}] if system is not None else []
    return [*head, {"role": "user", "content": text}]


def read_chat_template(folder: Path) -> ChatTemplate | None:
    """The chat template of a tokenizer folder (``chat_template.jinja``, else ``tokenizer_config.json``'s
    ``chat_template``: a text, or a list of named ones whose ``default`` is taken), with the special tokens its
    ``tokenizer_config.json`` names; None when it has none. Unreadable files are ``ValueError``."""
    config = read_tokenizer_config(folder)
    path = Path(folder) / TEMPLATE_FILE
    try:
        source = path.read_text(encoding="utf-8") if path.is_file() else config.get("chat_template")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    if isinstance(source, list):  # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
        named = {t.get("name"): t.get("template") for t in source if isinstance(t, dict)}
        source = named.get("default")
    if source is None:
        return None
    if not isinstance(source, str):
        raise ValueError(f"{Path(folder) / CONFIG_FILE}: chat_template must be a text; got {type(source).__name__}")
    return ChatTemplate(source, special_token(config, "bos_token"), special_token(config, "eos_token"))


def read_tokenizer_config(folder: Path) -> dict:
    """``tokenizer_config.json`` of ``folder`` as a dict (empty without one); ``ValueError`` when unreadable."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return config


def special_token(config: dict, key: str) -> str | None:
    """A special token of ``tokenizer_config.json``: a text, or an ``AddedToken`` mapping with its ``content``."""
    value = config.get(key)
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def write_chat_template(chat: ChatTemplate | None, eos_token: str | None, folder: Path) -> None:
    """Save the end token and the chat template (when there is one) beside a ``tokenizer.json``, as transformers
    lays them out, so the folder reads back here and in transformers alike."""
    config = {key: value for key, value in (("bos_token", chat and chat.bos_token), ("eos_token", eos_token)) if value}
    if config:
        (Path(folder) / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    if chat is not None:
        (Path(folder) / TEMPLATE_FILE).write_text(chat.source, encoding="utf-8")
