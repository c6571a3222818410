"""Checkpoints by Hub id (``org/name`` or ``org/name@revision``), fetched with ``huggingface_hub`` (the ``[hub]``
extra, imported only here and only when a Hub id is given).

A local path always wins over a Hub id of the same spelling. Only configuration (JSON), safetensors files and a
``chat_template.jinja`` (text, rendered in Jinja's sandbox) are fetched; a repository with neither safetensors file
falls back to ``pytorch_model.bin``, which the loader reads with ``weights_only=True``. Nothing in a repository is
ever run. The Hub's own cache is used, so a model fetched once loads offline (``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import re
from pathlib import Path

from .checkpoint import CheckpointError

#: ``org/name`` with an optional ``@revision``; the revision is checked apart, by ``check_revision``
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*(@.+)?$")
#: what git forbids anywhere in a ref name: control characters and space, ``~^:?*[\``, ``..``, ``//``, ``@{``
REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|//|@\{")
FILES = ["*.json", "*.safetensors", "chat_template.jinja"]
PICKLED_WEIGHTS = "pytorch_model.bin"
INSTALL = "pip install 'scorediff[hub]'"


def is_hub_id(spec: str | Path) -> bool:
    """Whether ``spec`` names a Hub repository rather than an existing local path."""
    return isinstance(spec, str) and not Path(spec).exists() and HUB_ID.match(spec) is not None


def locate(spec: str | Path) -> Path:
    """The local folder for ``spec``: itself when it is a local path, else a snapshot of the Hub repository it
    names (downloaded, or from the Hub cache)."""
    if not is_hub_id(spec):
        return Path(spec)
    repo, _, revision = str(spec).partition("@")
    return download(repo, check_revision(repo, revision) if revision else None)


def check_revision(repo: str, revision: str) -> str:
    """Check that ``revision`` is a branch, tag or commit name by git's ref-name rules.

    A slash inside a name (``refs/pr/1``, ``feature/x``) is fine; ``..``, a leading ``/`` or ``-`` and the rest of
    what git refuses are not. The check comes first because the Hub client joins the revision to its cache folder
    (``refs/<revision>``) unchecked: a name that climbs out of the repository would read a file planted elsewhere
    and load the folder that file names.

    Args:
        repo: the ``org/name`` the revision belongs to (for the message).
        revision: what came after the ``@``.

    Returns:
        ``revision`` unchanged.

    Raises:
        CheckpointError: one line, when git would refuse the name.
    """
    parts = revision.split("/")
    if (
        REF_FORBIDDEN.search(revision)
        or revision.startswith(("/", "-"))
        or revision.endswith(("/", "."))
        or revision == "@"
        or any(part.startswith(".") or part.endswith(".lock") for part in parts)
    ):
        raise CheckpointError(
            f"{repo}: expected a branch, tag or commit name after '@' (git's ref-name rules: "
            f"no '..', '//', '@{{', spaces or ~^:?*[\\, no leading '/' or '-'); got {revision!r}"
        )
    return revision


def download(repo: str, revision: str | None = None) -> Path:
    """A snapshot of ``repo`` at ``revision`` with its JSON and weight files; one-line errors for what goes wrong."""
    try:
        import huggingface_hub
    except ImportError:
        raise ImportError(f"{repo} is not a local folder; to fetch it from the Hub: {INSTALL}") from None
    try:
        folder = Path(huggingface_hub.snapshot_download(repo, revision=revision, allow_patterns=FILES))
        if not any(folder.glob("*.safetensors")):
            folder = Path(huggingface_hub.snapshot_download(repo, revision=revision, allow_patterns=[PICKLED_WEIGHTS]))
    except Exception as error:
        raise CheckpointError(_reason(repo, revision, error)) from None
    return folder


def _reason(repo: str, revision: str | None, error: Exception) -> str:
    """One line for a failed fetch, by the Hub client's error class."""
    from huggingface_hub import errors

    at = f"{repo}@{revision}" if revision else repo
    if isinstance(error, errors.GatedRepoError):
        return f"{at} is gated on the Hub: accept its terms and log in (`hf auth login`)"
    if isinstance(error, errors.RepositoryNotFoundError):
        return f"{at} is neither a local folder nor a model on the Hub (private? log in: `hf auth login`)"
    if isinstance(error, errors.RevisionNotFoundError):
        return f"{repo} has no revision {revision!r} on the Hub"
    if isinstance(error, errors.LocalEntryNotFoundError):
        return f"{at} is not in the Hub cache and the Hub cannot be reached (offline?); fetch it once online"
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"fetching {at} from the Hub failed: {first}"
