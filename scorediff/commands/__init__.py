"""The subcommands of the ``scorediff`` command line, one module per group."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..config import presets
from ..devices import resolve_device, torch_device
from ..errors import ScorediffError
from ..fileio import atomic_write_text
from ..generation import MAX_SEED

DTYPES = ("float32", "bfloat16", "float16")
"""What ``--dtype`` offers (``scorediff.load`` also reads float64)."""


class UsageError(ScorediffError):
    """A mistake in what the user asked for: printed as one line, exit code 2, no traceback."""


def atomic_write(path, text: str) -> None:
    """Write a user's output file whole or not at all; through a link, its target is written (the rename that
    makes the write whole would otherwise replace the link)."""
    check_writable(path)
    atomic_write_text(os.path.realpath(path), text)


def seed_value(text: str) -> int:
    """An argparse ``type`` for ``--seed``: a whole number in [0, 2**63 - 1] (64-bit, as ``train.seed``)."""
    try:
        value = int(text)
    except ValueError:  # not a whole number, or more digits than Python converts
        value = None
    if value is None or not 0 <= value <= MAX_SEED:
        shown = text if len(text) <= 30 else f"{text[:12]}... ({len(text)} characters)"
        raise argparse.ArgumentTypeError(f"expected a whole number in [0, 2**63 - 1]; got {shown!r}")
    return value


def positive(name: str, value: int | float | None, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise UsageError(f"{name} must be {'>= 0' if allow_zero else '> 0'}; got {value}")


#: what marks a folder as a model's or a run's, beside its config.json: a user's output never replaces their files
MODEL_MARKERS = ("model.safetensors", "model.safetensors.index.json", "ema.safetensors", "checkpoints", "sharded")
#: the files of such a folder, by name and by ending (weights, configs, tokenizers, chat templates, a run's log)
MODEL_FILES = ("metrics.jsonl", "training_curve.png", "README.md", ".lock", "merges.txt", "vocab.bpe")
MODEL_SUFFIXES = (".safetensors", ".json", ".gguf", ".bin", ".pt", ".jinja", ".model", ".distcp", ".metadata")


def check_writable(path) -> None:
    """A user's output file can be written at ``path``: its folder exists and may be written; it is no folder,
    device or pipe (the atomic rename would replace a device with a file); and it is not an existing file of a model
    or run folder (``model_folder_of``, ``_model_file``), which outputs never replace (new files beside them are
    fine). A link is judged by its target, which is what ``atomic_write`` writes."""
    path, real = Path(path), Path(os.path.realpath(path))
    if not real.parent.is_dir():
        raise UsageError(f"cannot write {path}: folder {real.parent} does not exist")
    if real.is_dir():
        raise UsageError(f"cannot write {path}: it is a folder")
    if real.exists() and not real.is_file():
        raise UsageError(f"cannot write {path}: it is not a regular file (a device, pipe or socket)")
    if not os.access(real.parent, os.W_OK) or (real.exists() and not os.access(real, os.W_OK)):
        raise UsageError(f"cannot write {path}: permission denied")
    owner = model_folder_of(real) if real.is_file() else None
    if owner is not None and _model_file(real, owner):
        raise UsageError(f"{path} is a file of the model or run folder {owner}; write the output elsewhere")


def _model_file(path: Path, owner: Path) -> bool:
    """Whether ``path``, in the model or run folder ``owner``, is one of its files: any file of its subfolders
    (checkpoints, shards), and beside them the model's and the run's own (``MODEL_FILES``, ``MODEL_SUFFIXES``);
    a user's earlier ``answers.txt`` there may be written again."""
    nested = len(path.relative_to(owner).parts) > 1
    return nested or path.name in MODEL_FILES or path.name.endswith(MODEL_SUFFIXES)


def model_folder_of(path: Path) -> Path | None:
    """The nearest folder above ``path`` that is a model's or a run's (a ``config.json`` beside weights, shards or
    checkpoints), or None."""
    for folder in path.parents:
        if (folder / "config.json").is_file() and any((folder / name).exists() for name in MODEL_MARKERS):
            return folder
    return None


def check_not_input(flag: str, path, input_flag: str, input_path, what: str) -> None:
    """Refuse an output ``path`` that is the file read as ``input_path`` (the same file by any name or link): writing
    ``what`` there would replace the user's input."""
    if not path or not input_path:
        return
    same = os.path.realpath(path) == os.path.realpath(input_path)
    if same or (Path(path).exists() and Path(input_path).exists() and Path(path).samefile(input_path)):
        raise UsageError(f"{flag} {path} is the {input_flag} file; the {what} go to another file, so it is kept")


def check_output(flag: str, path, what: str, inputs: dict[str, object]) -> None:
    """``check_writable`` for the output ``path`` of ``flag`` (nothing when it is not given), which is also none of
    the command's ``inputs`` (``{flag: a path, a list of them or None}``, other outputs included)."""
    if path is None:
        return
    if not str(path).strip():  # ``--out ""`` printed to the terminal instead
        raise UsageError(f"{flag} expects a file path; got {str(path)!r}")
    check_writable(path)
    for input_flag, paths in inputs.items():
        for input_path in paths if isinstance(paths, list | tuple) else [paths]:
            check_not_input(flag, path, input_flag, input_path, what)


def check_folder_writable(path) -> None:
    """A folder can be created (or written) at ``path``: it is not a file, and its nearest existing folder may
    be written."""

    path = Path(path).absolute()
    if path.exists() and not path.is_dir():
        raise UsageError(f"cannot write into {path}: it is a file, not a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UsageError(f"cannot write into {path}: {existing} is not a folder this user may write")


def add_run_config_option(parser: argparse.ArgumentParser) -> None:
    """``--config``, as ``train`` takes it, for a command that reads a run's configuration without training it
    (``plan``, ``prepare``); ``--section.key=value`` overrides come with ``accepts_overrides``."""
    parser.add_argument("--config", default="tiny", help=f"preset name ({', '.join(presets())}) or a YAML file")


def add_load_options(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--dtype``: where a command that runs a model puts it, and the dtype of its weights."""
    parser.add_argument("--device", default="auto", type=resolve_device, help="auto: cuda when available, else cpu")
    parser.add_argument(
        "--dtype", default="float32", choices=DTYPES,
        help="the weights' dtype: bfloat16 or float16 halve the memory a model needs (logits stay float32)",
    )  # fmt: skip


def check_device(name: str) -> None:
    """``name`` is ``auto`` or a torch device that exists here (``cuda`` needs a GPU)."""
    torch_device(name, "--device")


def check_memory(needed: int, knobs: str = "fewer --num-samples, a shorter --length or fewer --steps") -> None:
    """Refuse a request that would need more than this machine's physical memory; ``knobs`` says what to ask for
    instead."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system: no estimate to compare with
        return
    if needed > total:
        raise UsageError(
            f"this request would need about {needed / 2**30:,.1f} GiB; the machine has {total / 2**30:,.1f} GiB "
            f"(ask for {knobs})"
        )


def label_id(loaded, label: str) -> int:
    """The id of class ``label`` of a conditional checkpoint; a one-line error for any other name."""
    names = loaded.label_names
    if not names:
        raise UsageError(f"--label {label}: this model is unconditional (it was trained without labels)")
    if label not in names:
        raise UsageError(f"--label {label}: the model knows the labels {', '.join(names)}")
    return names.index(label)
