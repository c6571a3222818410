"""A MkDocs hook that writes two reference pages at build time: every command and flag of the command line, read
from ``scorediff.cli.build_parser()``, and every configuration section and key with its default and docstring, read
from the dataclasses in ``scorediff.config.SECTIONS`` and the presets in ``scorediff/configs``.

Generated from the code at every build, the pages cannot fall behind it; ``tests/test_docs.py`` imports this file
to check that they hold every flag and key."""

from __future__ import annotations

import argparse
import ast
import inspect
import textwrap
from dataclasses import MISSING, fields

import yaml

from scorediff.cli import build_parser
from scorediff.config import PRESET_DIR, SECTIONS, presets

CLI_PAGE = "reference/cli.md"
CONFIG_PAGE = "reference/config.md"
GENERATED = (CLI_PAGE, CONFIG_PAGE)


def _cell(text: object) -> str:
    """``text`` on one line, safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def subcommands(parser: argparse.ArgumentParser | None = None) -> dict[str, tuple[str, argparse.ArgumentParser]]:
    """Each subcommand's name, one-line help and parser, in the order ``scorediff --help`` lists them."""
    parser = parser or build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
    return {name: (helps.get(name, ""), sub) for name, sub in action.choices.items()}


def _flag_row(action: argparse.Action) -> str:
    names = ", ".join(f"`{name}`" for name in action.option_strings)
    if action.choices is not None:
        value = " \\| ".join(f"`{choice}`" for choice in action.choices)
    elif action.nargs == 0:
        value = "(switch)"
    else:
        value = (action.metavar or action.dest).upper() + (" ..." if action.nargs in ("+", "*") else "")
        value = f"`{value}`"
    if action.required:
        default = "required"
    elif action.default in (None, False, argparse.SUPPRESS):
        default = ""
    else:
        default = f"`{action.default}`"
    return f"| {names} | {value} | {default} | {_cell(action.help or '')} |"


def cli_markdown() -> str:
    parser = build_parser()
    lines = [
        "# Command line",
        "",
        "Every command and flag of `scorediff`, generated from the command line's own parser when this site is built.",
        "`scorediff COMMAND --help` prints the same. `train` also takes any configuration key as",
        "`--section.key=value` ([configuration reference](config.md)); the other commands read the configuration",
        "saved with the checkpoint.",
        "",
        "| command | what it does |",
        "| --- | --- |",
    ]
    commands = subcommands(parser)
    lines += [f"| [`{name}`](#scorediff-{name}) | {_cell(help_)} |" for name, (help_, _) in commands.items()]
    for name, (help_, sub) in commands.items():
        lines += ["", f"## scorediff {name}", ""]
        if sub.description or help_:
            lines += [_cell(sub.description or help_), ""]
        lines += ["| flag | value | default | meaning |", "| --- | --- | --- | --- |"]
        lines += [_flag_row(a) for a in sub._actions if a.option_strings and a.dest != "help"]
        if sub.get_default("accepts_overrides"):
            lines.append("| `--section.key=value` | a key's value | | any key of the [configuration](config.md) |")
    return "\n".join(lines) + "\n"


def field_docs(cls: type) -> dict[str, str]:
    """The docstrings written under the fields of a dataclass (the string literal after each annotated name)."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    docs = {}
    for node, following in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = inspect.cleandoc(following.value.value)
    return docs


def _default(field_) -> str:
    value = field_.default if field_.default is not MISSING else field_.default_factory()
    return '`""`' if value == "" else f"`{str(value).lower() if isinstance(value, bool) else value}`"


def _yaml_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else "" if value is None else str(value)


def _flatten(values: dict) -> list[str]:
    pairs = []
    for key, value in values.items():
        if isinstance(value, dict):
            pairs += [f"{key}.{inner}={_yaml_value(v)}" for inner, v in value.items()]
        else:
            pairs.append(f"{key}={value}")
    return pairs


def config_markdown() -> str:
    lines = [
        "# Configuration",
        "",
        "Every section and key of a run's configuration, generated from `scorediff/config_sections.py`,",
        "`scorediff/train_config.py` and `scorediff/model/config.py` when this site is built. Set a key in a YAML",
        "file given to `--config` or",
        "on the command line as `--section.key=value`, e.g. `scorediff train --model.seq_len=64`; the resolved",
        "configuration is saved as `config.json` in every run ([presets and overrides](../guides/configuration.md)).",
        "",
        "Top level: `objective`, `diffusion` (score entropy) or `autoregressive` (the next-token baseline).",
    ]
    for section, cls in SECTIONS.items():
        docs = field_docs(cls)
        lines += ["", f"## {section}", "", _cell(inspect.cleandoc(cls.__doc__ or "")), ""]
        lines += ["| key | default | meaning |", "| --- | --- | --- |"]
        lines += [f"| `{section}.{f.name}` | {_default(f)} | {_cell(docs.get(f.name, ''))} |" for f in fields(cls)]
    lines += [
        "",
        "## Presets",
        "",
        "`--config NAME` starts from the defaults above and sets what its file in `scorediff/configs/` sets:",
        "",
        "| preset | sets |",
        "| --- | --- |",
    ]
    for name in presets():
        values = yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text()) or {}
        lines.append(f"| `{name}` | {', '.join(f'`{pair}`' for pair in _flatten(values))} |")
    return "\n".join(lines) + "\n"


def on_files(files, config):
    """Add the two generated pages to the site."""
    from mkdocs.structure.files import File

    for page, make in ((CLI_PAGE, cli_markdown), (CONFIG_PAGE, config_markdown)):
        files.append(File.generated(config, page, content=make()))
    return files
