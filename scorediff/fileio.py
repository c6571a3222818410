"""Writing files and folders so that a crash never leaves a half-written one behind, and a lock per run."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_PREFIX = ".tmp-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_temp_dir(parent: Path) -> Path:
    """A fresh folder in ``parent`` with the permissions a plain ``mkdir`` would give (mkdtemp makes it 0700,
    which a shared cluster group could not read)."""
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def make_parents(folder: Path) -> list[Path]:
    """Make ``folder`` and its missing parents; return the ones this call made, deepest first."""
    made = []
    for path in [folder, *folder.parents]:
        if path.exists() or path.is_symlink():
            break
        made.append(path)
    folder.mkdir(parents=True, exist_ok=True)
    return made


def remove_if_empty(made: list[Path]) -> None:
    """Remove the folders ``make_parents`` made, deepest first, while each is still empty."""
    for path in made:
        try:
            path.rmdir()
        except OSError:  # something else now lives there
            return


@contextmanager
def atomic_directory(final: str | Path, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary folder next to ``final``; on success it becomes ``final``, on error it is removed.

    With ``replace`` an existing ``final`` is swapped out by two renames, so a reader sees the old folder or
    the new one, never none. Without it the first writer wins: when ``final`` appeared meanwhile (another
    process wrote the same content) the new folder is dropped. On error the parents it made are removed as well,
    so a failed write leaves no empty folders behind.
    """
    final = Path(final)
    made = make_parents(final.parent)
    tmp = make_temp_dir(final.parent)
    try:
        yield tmp
        if final.exists() and not replace:
            shutil.rmtree(tmp, ignore_errors=True)
            return
        if final.exists():
            if not final.is_dir() or final.is_symlink():
                raise FileExistsError(f"will not replace {final}, which is not a folder, with a folder")
            old = final.with_name(f"{TMP_PREFIX}old-{final.name}-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.replace(tmp, final)
            except OSError:  # another writer published it first
                if replace or not final.exists():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        remove_if_empty(made)
        raise


def remove_debris(parent: Path) -> None:
    """Remove the ``.tmp-*`` folders a killed writer left in ``parent`` (call while holding its lock)."""
    for leftover in Path(parent).glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` through a temporary file in the same folder, then rename it into place."""
    path = Path(path)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LockHeld(RuntimeError):
    """Another process holds the lock."""


class DirectoryLock:
    """An exclusive advisory lock on ``directory/.lock`` (``fcntl.flock``): the operating system releases it
    when the holder exits, however it exits, so a killed process never leaves it stuck.

    Where ``fcntl`` does not exist (Windows) the lock is a no-op.
    """

    def __init__(self, directory: Path):
        self.path = Path(directory) / ".lock"
        self._handle = None

    def acquire(self) -> DirectoryLock:
        try:
            import fcntl
        except ImportError:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise LockHeld(holder) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the descriptor releases the flock
            self._handle = None
