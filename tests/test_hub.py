"""Loading by Hub id through the real ``huggingface_hub`` client, from a Hub cache laid out on disk, offline."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli.cli_run import assert_user_error

import scorediff
from scorediff import hub
from scorediff.checkpoint import CheckpointError

constants = pytest.importorskip("huggingface_hub.constants")
SEDD_TINY = Path(__file__).parent / "fixtures" / "sedd_reference" / "tiny_absorb"


def put_in_cache(cache: Path, repo: str, files: Path, revision: str = "main", commit: str = "0" * 40) -> Path:
    """The Hub cache's own layout: ``models--org--name/refs/<revision>`` names a commit whose snapshot holds the
    files (the client's blobs are only a way to share storage; plain files in the snapshot are what it reads)."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs" / revision).parent.mkdir(parents=True, exist_ok=True)
    (root / "refs" / revision).write_text(commit)
    snapshot = root / "snapshots" / commit
    shutil.copytree(files, snapshot, dirs_exist_ok=True)
    return snapshot


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def scores(loaded) -> torch.Tensor:
    x = torch.tensor([[1, 5, 0, 7, 3, 2, 9, 4]]) % loaded.graph.num_tokens
    with torch.no_grad():
        return loaded.model(x, torch.tensor([0.7]))


def test_a_hub_id_loads_the_cached_snapshot_offline(offline_cache):
    put_in_cache(offline_cache, "someone/sedd-tiny", SEDD_TINY)
    put_in_cache(offline_cache, "someone/sedd-tiny", SEDD_TINY, revision="v1", commit="1" * 40)
    local = scorediff.load(SEDD_TINY)
    for spec in ("someone/sedd-tiny", "someone/sedd-tiny@v1"):
        hub = scorediff.load(spec)
        assert hub.source == spec and hub.layout == "SEDD" and hub.path.parent.name == "snapshots"
        assert torch.equal(scores(hub), scores(local))


def test_a_local_folder_of_the_same_spelling_wins(offline_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(SEDD_TINY, tmp_path / "someone" / "sedd-tiny")
    loaded = scorediff.load("someone/sedd-tiny")  # nothing in the cache: only the local folder can answer
    assert loaded.path == Path("someone/sedd-tiny")


def test_hub_failures_are_one_line(offline_cache, capsys, monkeypatch):
    put_in_cache(offline_cache, "someone/sedd-tiny", SEDD_TINY)
    assert_user_error(capsys, ["info", "--checkpoint", "someone/absent"], r"someone/absent is not in the Hub cache")
    assert_user_error(capsys, ["info", "--checkpoint", "someone/sedd-tiny@v9"], r"not in the Hub cache")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # the [hub] extra not installed
    assert_user_error(capsys, ["info", "--checkpoint", "someone/sedd-tiny"], r"pip install 'scorediff\[hub\]'")


def test_the_command_line_reads_the_cache_with_the_hub_offline(tmp_path):
    """A separate process, configured only through the Hub's own environment variables."""
    put_in_cache(tmp_path / "hub", "someone/sedd-tiny", SEDD_TINY)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "scorediff", "info", "--checkpoint", "someone/sedd-tiny"],
        env=env, capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "someone/sedd-tiny" in done.stdout and "SEDD" in done.stdout


def test_a_repository_with_pickled_weights_only_is_read_weights_only(offline_cache, tmp_path):
    """Without safetensors the client is asked for pytorch_model.bin, which is read with weights_only."""
    from safetensors.torch import load_file

    files = tmp_path / "pickled"
    files.mkdir()
    shutil.copy(SEDD_TINY / "config.json", files / "config.json")
    torch.save(load_file(SEDD_TINY / "model.safetensors"), files / "pytorch_model.bin")
    put_in_cache(offline_cache, "someone/sedd-pickled", files)
    assert torch.equal(scores(scorediff.load("someone/sedd-pickled")), scores(scorediff.load(SEDD_TINY)))


def test_a_revision_that_climbs_out_of_the_cache_is_refused(offline_cache, tmp_path, capsys):
    """A ref planted outside the cache names a folder outside it: the client alone follows both, scorediff
    refuses the revision before the client sees it."""
    from huggingface_hub import snapshot_download

    put_in_cache(offline_cache, "someone/sedd-tiny", SEDD_TINY)
    shutil.copytree(SEDD_TINY, tmp_path / "outside")
    # refs/../../../planted is tmp_path/planted; snapshots/../../../outside is tmp_path/outside
    (tmp_path / "planted").write_text("../../../outside")
    climbing = "../../../planted"
    reached = Path(snapshot_download("someone/sedd-tiny", revision=climbing, allow_patterns=["*.json"]))
    assert reached.resolve() == (tmp_path / "outside").resolve()  # what the old code loaded
    with pytest.raises(CheckpointError, match=r"expected a branch, tag or commit name .*got '\.\./"):
        scorediff.load(f"someone/sedd-tiny@{climbing}")
    assert_user_error(capsys, ["info", "--checkpoint", f"someone/sedd-tiny@{climbing}"], r"someone/sedd-tiny: exp")


@pytest.mark.parametrize(
    "revision",
    ["..", "a/../b", "/etc", "-rf", "a//b", "a/", "v1.lock", "a/.hidden", "a.", "x y", "a\nb", "a~1", "a^", "a:b",
     "a?", "a*", "a[b", "a\\b", "a@{1}", "@"],
)  # fmt: skip
def test_revisions_git_would_refuse_are_refused(revision):
    with pytest.raises(CheckpointError, match=r"^someone/x: expected a branch, tag or commit name"):
        hub.check_revision("someone/x", revision)


def test_branch_tag_and_commit_names_pass(offline_cache):
    for revision in ("main", "v1.0", "refs/pr/1", "feature/x", "a-b_c", "0" * 40):
        assert hub.check_revision("someone/x", revision) == revision
    put_in_cache(offline_cache, "someone/sedd-tiny", SEDD_TINY, revision="refs/pr/1", commit="2" * 40)
    assert scorediff.load("someone/sedd-tiny@refs/pr/1").path.name == "2" * 40
