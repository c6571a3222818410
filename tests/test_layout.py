"""The layout's contracts, read from the imports in the source (DESIGN.md): the math core imports only torch,
the standard library and itself; the library never imports the command line."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "scorediff"
CORE = ("graphs", "schedules", "sampling", "losses.py", "likelihood.py")
CORE_MAY_IMPORT = {"graphs", "schedules", "sampling", "losses", "likelihood", "errors", "types"}


def imports(path: Path) -> list[tuple[str, int]]:
    """(module, level) of every import in ``path``: level 0 absolute, 1 from ``.``, 2 from ``..``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level))
    return found


def package_module(path: Path, module: str, level: int) -> str:
    """The first part of the package module an import names, seen from the package root."""
    if level == 0:
        return module.removeprefix("scorediff.").split(".")[0] if module.startswith("scorediff") else ""
    folder = path.relative_to(PACKAGE).parent.parts
    return [*folder[: len(folder) - level + 1], *module.split("."), ""][0]


def core_files() -> list[Path]:
    return [f for name in CORE for f in ([PACKAGE / name] if name.endswith(".py") else (PACKAGE / name).rglob("*.py"))]


def test_the_math_core_imports_only_torch_and_itself():
    outside = []
    for path in core_files():
        for module, level in imports(path):
            top = module.split(".")[0]
            if level == 0 and top not in {"torch", "__future__", "scorediff"} and top not in sys.stdlib_module_names:
                outside.append(f"{path.relative_to(PACKAGE)}: {module}")
            elif (level or top == "scorediff") and package_module(path, module, level) not in CORE_MAY_IMPORT:
                outside.append(f"{path.relative_to(PACKAGE)}: {'.' * level}{module}")
    assert len(core_files()) > 10 and not outside


def test_the_library_does_not_import_the_command_line():
    command_line = ("commands", "cli.py", "__main__.py")
    library = [p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in command_line]
    offenders = [
        f"{path.relative_to(PACKAGE)}: {'.' * level}{module}"
        for path in library
        for module, level in imports(path)
        if (level or module.startswith("scorediff")) and package_module(path, module, level) in ("commands", "cli")
    ]
    assert len(library) > 40 and not offenders


def test_test_modules_have_unique_names():
    """pytest imports test files by basename (no packages under tests/), so two of one name stop collection."""
    names = [path.name for path in Path(__file__).parent.rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
