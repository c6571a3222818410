"""``scorediff export`` of damaged sharded checkpoints: each once ended in DCP's multi-line traceback (a missing or
truncated shard, a config of another width) or half-written (``ema.safetensors`` and a temporary file left when
``model.safetensors`` was a folder); now one line, exit code 2, and the folder as it was."""

import json
import shutil
from pathlib import Path

import pytest
from cli_run import assert_user_error, run_cli


def truncate_shard(folder: Path) -> None:
    shard = folder / "sharded" / "__0_0.distcp"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 3])


def widen_config(folder: Path) -> None:
    values = json.loads((folder / "config.json").read_text())
    values["model"]["hidden_size"] = 64
    (folder / "config.json").write_text(json.dumps(values))


def folder_for_weights(folder: Path) -> None:
    (folder / "model.safetensors").mkdir()
    (folder / "model.safetensors" / "mine.txt").write_text("kept")


DAMAGE = {
    "truncated shard": (truncate_shard, r"the shards of .* cannot be read \(EOFError\)$"),
    "missing shard": (lambda f: (f / "sharded" / "__0_0.distcp").unlink(), r"cannot be read \(FileNotFoundError: "),
    "other width": (
        widen_config,
        r"do not fit the network of its config.json: its vocab_embed.weight is of shape"
        r" \(258, 32\), the network has \(258, 64",
    ),
    "folder for weights": (folder_for_weights, r"model.safetensors is not a file; export writes the weights under"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_export_of_damaged_shards_is_one_line_and_writes_nothing(capsys, tmp_path, shards_only, damage):
    folder = tmp_path / "step_00000001"
    shutil.copytree(shards_only, folder)
    harm, pattern = DAMAGE[damage]
    harm(folder)
    before = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert_user_error(capsys, ["export", str(folder)], pattern)
    assert {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_export_of_the_undamaged_copy_still_writes_both_files(capsys, tmp_path, shards_only):
    folder = tmp_path / "step_00000001"
    shutil.copytree(shards_only, folder)
    code, _, err = run_cli(capsys, ["export", str(folder)])
    assert code == 0, err
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["config.json", "ema.safetensors", "model.safetensors", "sharded", "tokenizer.json",
                     "trainer_state.json"]  # fmt: skip
