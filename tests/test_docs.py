"""The README and the docs against the code.

- Every Python block runs (each in its own process, from an empty folder); a block that cannot run here is fenced as
  ``python notest`` and says why in the text around it.
- Every ``scorediff ...`` command in a bash block or an inline code span names a real command and real flags, and
  every ``--section.key=value`` override a real configuration key; the commands of bash blocks parse whole (values,
  choices, required flags) with the command line's own parser, and the ones that need no trained model run.
- The reference pages generated at build time hold every command, flag, configuration section and key.
- Links between pages point at pages that exist.
"""

import importlib.util
import re
import shlex
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from scorediff.cli import build_parser
from scorediff.config import SECTIONS, apply_overrides, config_from_dict, load_config

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```python([^\n]*)\n(.*?)^```", re.S | re.M)
BASH = re.compile(r"^```bash[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`(scorediff [a-z][^`]*)`")
SEPARATORS = {"&&", "||", ";", "|", "&", "(", ")"}

_spec = importlib.util.spec_from_file_location("reference_pages", ROOT / "docs" / "hooks" / "reference_pages.py")
reference_pages = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference_pages)


def blocks() -> list[tuple[str, str, bool]]:
    found = []
    for page in PAGES:
        for number, match in enumerate(FENCE.finditer(page.read_text()), start=1):
            found.append((f"{page.relative_to(ROOT)}#{number}", match.group(2), "notest" in match.group(1)))
    return found


@pytest.mark.parametrize("name, code, skip", blocks(), ids=[name for name, _, _ in blocks()])
def test_the_python_block_runs(name, code, skip, tmp_path):
    if skip:
        pytest.skip(f"{name} is marked notest (it needs what CI lacks, as its page says)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{name}:\n{done.stderr[-3000:]}"


def split_commands(line: str) -> list[list[str]]:
    """The ``scorediff`` argument lists of one shell line (``scorediff ...``, ``python -m scorediff ...``,
    ``torchrun ... -m scorediff ...``), comments dropped, split at ``&&``, ``;``, ``|`` and the like."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, "#"
    words, found, current = list(lexer), [], []
    for word in [*words, ";"]:
        if word in SEPARATORS:
            starts = [i for i, w in enumerate(current) if w == "scorediff" and (i == 0 or current[i - 1] == "-m")]
            start = starts[0] if starts else None
            if start is not None:
                found.append(current[start + 1 :])
            current = []
        else:
            current.append(word)
    return found


def shell_lines(code: str) -> list[tuple[int, str]]:
    """``(offset of its first line, text)`` for each line of a shell block, a line ended by a backslash joined to
    the next as the shell joins it (the flags after the first line were never checked)."""
    lines, start, pending = [], 0, ""
    for offset, line in enumerate(code.splitlines()):
        start = offset if not pending else start
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append((start, pending + line))
        pending = ""
    return lines + ([(start, pending)] if pending else [])


def documented_commands() -> list[tuple[str, list[str], bool]]:
    """``(where, argv, whole)`` for every documented command; ``whole``: from a bash block, meant to be pasted."""
    found = []
    for page in PAGES:
        text = page.read_text()
        name = str(page.relative_to(ROOT))
        for block in BASH.finditer(text):
            first_line = text[: block.start()].count("\n") + 2
            for offset, line in shell_lines(block.group(1)):
                for argv in split_commands(line):
                    found.append((f"{name}:{first_line + offset}", argv, True))
        for span in INLINE.finditer(text):
            line = text[: span.start()].count("\n") + 1
            found += [(f"{name}:{line}", argv, False) for argv in split_commands(span.group(1))]
    return found


def problems(argv: list[str], whole: bool) -> list[str]:
    """What is wrong with ``scorediff`` + ``argv`` against the parser and the configuration, [] when nothing."""
    commands = reference_pages.subcommands()
    if not argv:
        return ["no command"]
    if argv[0].startswith("-"):
        return [] if argv[0] in ("--help", "-h", "--version") else [f"unknown flag {argv[0]}"]
    if argv[0] not in commands:
        return [f"unknown command {argv[0]!r}; the parser has {sorted(commands)}"]
    parser = commands[argv[0]][1]
    flags = {name for action in parser._actions for name in action.option_strings}
    found, overrides = [], []
    for word in argv[1:]:
        if not word.startswith("--"):
            continue
        name = word.split("=", 1)[0]
        if "." in name:
            overrides.append(word)
            section, _, key = name[2:].partition(".")
            keys = {f.name for f in fields(SECTIONS[section])} if section in SECTIONS else set()
            if key not in keys:
                found.append(f"{name} is not a configuration key")
            elif not parser.get_default("accepts_overrides"):
                found.append(f"{name}: `scorediff {argv[0]}` takes no configuration overrides")
        elif name not in flags:
            found.append(f"`scorediff {argv[0]}` has no flag {name}")
    if found or not whole:
        return found
    try:  # the whole command: values, choices and required flags, as `scorediff` itself reads them
        args, unknown = build_parser().parse_known_args(argv)
    except SystemExit:
        return [f"the parser refuses `scorediff {shlex.join(argv)}`"]
    if [u for u in unknown if u not in overrides]:
        return [f"unrecognised {unknown}"]
    if overrides:
        try:
            config_from_dict(apply_overrides(load_config("tiny").to_dict(), overrides))
        except Exception as error:  # noqa: BLE001 - any refusal is the finding
            return [f"{overrides}: {error}"]
    return []


COMMANDS = documented_commands()


def test_the_docs_document_commands():
    """The collector finds the commands the pages are made of (a broken pattern would let everything pass)."""
    names = {argv[0] for _, argv, _ in COMMANDS if argv}
    assert len(COMMANDS) > 60
    assert {"train", "sample", "infill", "eval", "info", "eval-dna", "push", "lm-eval", "playground", "demo"} <= names


@pytest.mark.parametrize("where, argv, whole", COMMANDS, ids=[f"{w} {' '.join(a[:1])}" for w, a, _ in COMMANDS])
def test_a_documented_command_parses(where, argv, whole, capsys):
    assert problems(argv, whole) == [], f"{where}: scorediff {shlex.join(argv)}"


@pytest.mark.parametrize(
    "argv, whole, expected",
    [
        (["sample", "--checkpoint", "r", "--no-such-flag"], False, "has no flag --no-such-flag"),
        (["sample", "--checkpoint", "r", "--predictor", "leapfrog"], True, "the parser refuses"),
        (["sample", "--num-samples", "3"], True, "the parser refuses"),  # --checkpoint is required
        (["train", "--model.no_such_key=1"], True, "is not a configuration key"),
        (["train", "--nosection.seq_len=1"], True, "is not a configuration key"),
        (["train", "--model.seq_len=many"], True, "expects an integer"),
        (["sample", "--checkpoint", "r", "--model.seq_len=64"], True, "takes no configuration overrides"),
        (["sampel", "--checkpoint", "r"], False, "unknown command"),
    ],
)
def test_a_wrong_command_is_caught(argv, whole, expected, capsys):
    assert any(expected in problem for problem in problems(argv, whole)), problems(argv, whole)


def test_commands_split_out_of_shell_lines():
    line = 'pip install -e . && scorediff train --data "books/**/*.txt"   # a comment --bogus'
    assert split_commands(line) == [["train", "--data", "books/**/*.txt"]]
    assert split_commands("torchrun --nproc_per_node=8 -m scorediff train --config small") == [
        ["train", "--config", "small"]
    ]
    assert split_commands("RUN=$(ls -td runs/*/ | head -1)") == []
    continued = "torchrun --nproc_per_node=2 -m scorediff train \\\n    --config small \\\n    --bogus\necho done"
    joined = "torchrun --nproc_per_node=2 -m scorediff train      --config small      --bogus"
    assert shell_lines(continued) == [(0, joined), (3, "echo done")]
    assert "has no flag --bogus" in problems(split_commands(shell_lines(continued)[0][1])[0], True)[0]


def needs_nothing(argv: list[str]) -> bool:
    """A command that needs no trained model, no network and no extra, and returns in seconds."""
    return argv[:1] == ["demo"] or "--help" in argv or argv[:1] == ["--version"]


RUNNABLE = sorted({shlex.join(argv) for _, argv, whole in COMMANDS if whole and needs_nothing(argv)})


def test_some_documented_commands_need_nothing():
    assert any(command.startswith("demo") for command in RUNNABLE)


@pytest.mark.parametrize("command", RUNNABLE)
def test_a_documented_command_that_needs_nothing_runs(command, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "scorediff", *shlex.split(command)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"scorediff {command}:\n{done.stderr[-3000:]}"
    assert done.stdout.strip()


def test_the_cli_reference_holds_every_command_and_flag():
    page = reference_pages.cli_markdown()
    for name, (_, parser) in reference_pages.subcommands().items():
        assert f"## scorediff {name}\n" in page
        section = page.split(f"## scorediff {name}\n", 1)[1].split("\n## ", 1)[0]
        for action in parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}`" in section, f"{name} {flag}"


def test_the_config_reference_holds_every_key_with_its_docstring():
    page = reference_pages.config_markdown()
    for section, cls in SECTIONS.items():
        docs = reference_pages.field_docs(cls)
        for field_ in fields(cls):
            assert f"| `{section}.{field_.name}` |" in page
        assert docs["seq_len" if section == "model" else next(iter(docs))].split()[0] in page
    assert reference_pages.field_docs(SECTIONS["model"])["seq_len"].startswith("Longest sequence")
    for preset in ("tiny", "tiny-ar", "tiny-block", "small", "small-ar", "medium", "dna", "dna-ar"):
        assert f"| `{preset}` |" in page


def test_links_between_pages_resolve():
    link = re.compile(r"\]\(([^)#\s]+\.md)(#[^)]*)?\)")
    generated = {(ROOT / "docs" / page).resolve() for page in reference_pages.GENERATED}
    for page in PAGES:
        for target, _ in link.findall(page.read_text()):
            if target.startswith("http"):
                continue
            resolved = (page.parent / target).resolve()
            assert resolved.exists() or resolved in generated, f"{page.relative_to(ROOT)} links to missing {target}"
