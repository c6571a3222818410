"""An output flag never replaces a file of a model or run folder, a command's input, a device or a pipe; each case
exited 0 and wrote over it (a checkpoint's config.json, once, so that no later command could read the run)."""

import os
import shutil
from pathlib import Path

import pytest
from cli_run import assert_user_error, run_cli

RUN_FILES = ["config.json", "metrics.jsonl", "tokenizer.json", "training_curve.png"]
CHECKPOINT_FILES = ["config.json", "model.safetensors", "ema.safetensors", "trainer_state.json"]


@pytest.fixture
def run(tmp_path, trained_run) -> Path:
    """A copy of the shared run: a test that fails must not damage the run other tests read."""
    shutil.copytree(trained_run, tmp_path / "run")
    return tmp_path / "run"


def _commands(run: Path, target: Path) -> list[list[str]]:
    """Every command with an output flag, writing to ``target``."""
    checkpoint = sorted((run / "checkpoints").iterdir())[0]  # another checkpoint than the one written to
    return [
        ["sample", "--checkpoint", str(checkpoint), "--steps", "2", "--out", str(target)],
        ["sample", "--checkpoint", str(run), "--steps", "2", "--trajectory", str(target.with_suffix(".png"))],
        ["eval", "--checkpoint", str(checkpoint), "--max-windows", "2", "--num-t", "1", "--json", str(target)],
        ["plan", "--config", "tiny", "--json", str(target)],
    ]


@pytest.mark.parametrize("name", [*RUN_FILES, *(f"checkpoints/last/{name}" for name in CHECKPOINT_FILES)])
def test_no_output_replaces_a_file_of_a_run(capsys, run, name):
    last = sorted((run / "checkpoints").iterdir())[-1]
    victim = run / name.replace("checkpoints/last", str(last.relative_to(run)))
    for argv in _commands(run, victim):
        target = Path(argv[-1])
        if not target.exists():  # the trajectory's .png of a file of another kind
            continue
        before = target.read_bytes()
        assert_user_error(capsys, argv, rf"{target.name} is a file of the model or run folder .*; write the output")
        assert target.read_bytes() == before


def test_outputs_beside_a_run_are_written_and_written_again(capsys, run):
    """New files beside the model are the user's own: written, and replaced by the next run of the command."""
    argv = ["sample", "--checkpoint", str(run), "--steps", "2", "--out", str(run / "samples.txt")]
    for _ in range(2):
        code, _, err = run_cli(capsys, argv)
        assert code == 0, err
    assert (run / "samples.txt").read_text().strip()


def test_a_pipe_is_refused_not_replaced_by_a_file(capsys, run, tmp_path):
    """The atomic rename replaced a device or pipe with a regular file (as root, ``--out /dev/full``)."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    argv = ["sample", "--checkpoint", str(run), "--steps", "2", "--out", str(pipe)]
    assert_user_error(capsys, argv, r"cannot write .*pipe: it is not a regular file \(a device, pipe or socket\)")
    assert pipe.is_fifo()


def test_a_link_is_written_through(capsys, run, tmp_path):
    """The rename replaced the link with a file and left its target as it was."""
    target, link = tmp_path / "target.txt", tmp_path / "link.txt"
    target.write_text("old")
    link.symlink_to(target)
    code, _, err = run_cli(capsys, ["sample", "--checkpoint", str(run), "--steps", "2", "--out", str(link)])
    assert code == 0, err
    assert link.is_symlink() and target.read_text() != "old" and target.read_text().strip()
    dangling = tmp_path / "dangling.txt"
    dangling.symlink_to(tmp_path / "no" / "such" / "folder.txt")
    argv = ["sample", "--checkpoint", str(run), "--steps", "2", "--out", str(dangling)]
    assert_user_error(capsys, argv, r"cannot write .*dangling.txt: folder .*/no/such does not exist")


def test_one_file_for_two_outputs_is_refused(capsys, run, tmp_path):
    out = tmp_path / "f.html"
    argv = [
        "sample",
        "--checkpoint",
        str(run),
        "--steps",
        "2",
        "--out",
        str(out),
        "--trajectory",
        f"{tmp_path}/./f.html",
    ]
    assert_user_error(capsys, argv, r"--out and --trajectory both name .*f.html; give each its own file")
    assert not out.exists()
