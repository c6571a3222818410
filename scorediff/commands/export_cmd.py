"""``scorediff export CHECKPOINT``: an FSDP run's sharded checkpoint written whole, so that load, sample, eval and push
read it.

A command of its own rather than a flag of another: it writes into a checkpoint folder, where ``info``, ``sample``
and ``eval`` only read and ``push`` uploads; exporting and publishing stay two steps, as saving and uploading do.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..checkpoint import CHECKPOINT_DIR, EMA_FILE, MODEL_FILE, SHARDED_DIR, list_checkpoints
from ..training.sharded import export
from . import UsageError


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "export",
        help="write an FSDP run's sharded checkpoint whole (model and EMA safetensors) for load/sample/eval/push",
        description=f"Read the shards of CHECKPOINT ({SHARDED_DIR}/, written by train.parallel=fsdp) in one process "
        f"and write {MODEL_FILE} and {EMA_FILE} into it. A run's last checkpoint has them already.",
    )
    parser.add_argument("checkpoint", help=f"a checkpoint folder of an FSDP run: RUN/{CHECKPOINT_DIR}/step_XXXXXXXX")
    parser.set_defaults(run=run)


def check_sharded(path: Path) -> None:
    """Refuse, in one line, a path that is not a sharded checkpoint (``UsageError``)."""
    if not path.exists():
        raise UsageError(f"no such checkpoint: {path}")
    if (path / SHARDED_DIR).is_dir():
        return
    checkpoints = list_checkpoints(path) if path.is_dir() else []
    if checkpoints:
        raise UsageError(f"{path} is a run folder; export one of its checkpoints, e.g. {checkpoints[-1]}")
    raise UsageError(
        f"{path} is not a sharded checkpoint (no {SHARDED_DIR}/ folder): only the checkpoints of a "
        f"train.parallel=fsdp run need exporting; the others hold {MODEL_FILE} already"
    )


def run(args: argparse.Namespace) -> int:
    path = Path(args.checkpoint)
    check_sharded(path)
    export(path)
    print(f"{path}: {MODEL_FILE} and {EMA_FILE} written whole; scorediff sample/eval/push read it")
    return 0
