"""Loading by Hub id through the real ``huggingface_hub`` client: from a Hub cache laid out on disk, offline, or
from a fake Hub that replaces only the client's HTTP transport."""

import hashlib
import os
import re
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
    with pytest.raises(CheckpointError, match=r"someone/x: expected a branch, tag or commit name"):
        hub.check_revision("someone/x", revision)


def test_branch_tag_and_commit_names_pass(offline_cache):
    for revision in ("main", "v1.0", "refs/pr/1", "feature/x", "a-b_c", "0" * 40):
        assert hub.check_revision("someone/x", revision) == revision
    put_in_cache(offline_cache, "someone/sedd-tiny", SEDD_TINY, revision="refs/pr/1", commit="2" * 40)
    assert scorediff.load("someone/sedd-tiny@refs/pr/1").path.name == "2" * 40


class Payload:
    """Unpickling this runs ``Path.write_text(marker, "ran")``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.write_text, (self.marker, "ran")


def test_a_pickle_that_would_run_code_is_refused_and_not_run(offline_cache, tmp_path, capsys):
    from safetensors.torch import load_file

    files, marker = tmp_path / "hostile", tmp_path / "marker"
    files.mkdir()
    shutil.copy(SEDD_TINY / "config.json", files / "config.json")
    torch.save({**load_file(SEDD_TINY / "model.safetensors"), "payload": Payload(marker)}, files / "pytorch_model.bin")
    torch.load(files / "pytorch_model.bin", weights_only=False)  # the payload is live: a plain load runs it
    assert marker.read_text() == "ran"
    marker.unlink()
    put_in_cache(offline_cache, "someone/hostile", files)
    with pytest.raises(CheckpointError, match=r"pytorch_model.bin is not a plain file of weights, so it is not read"):
        scorediff.load("someone/hostile")
    assert_user_error(capsys, ["info", "--checkpoint", "someone/hostile"], r"is not a plain file of weights")
    assert not marker.exists()


COMMIT = "a" * 40


class FakeHub:
    """The Hub's HTTP API for one commit of one model repository, as an ``httpx`` transport handler: repository
    info, the file tree, and the files; ``errors`` maps a URL path pattern to a status and ``X-Error-Code``."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.paths, self.errors = files, [], {}

    def __call__(self, request):
        import httpx2

        path = request.url.path
        self.paths.append(path)
        for pattern, (status, code) in self.errors.items():
            if re.search(pattern, path):
                return httpx2.Response(status, headers={"X-Error-Code": code}, request=request)
        if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/.+", path):
            siblings = [{"rfilename": name} for name in self.files]
            return httpx2.Response(200, json={"id": match[1], "sha": COMMIT, "siblings": siblings})
        if re.fullmatch(r"/api/models/[^/]+/[^/]+/tree/.+", path):
            return httpx2.Response(200, json=[{"type": "file", "path": name, "size": len(body), "oid": self.oid(body)}
                                              for name, body in self.files.items()])  # fmt: skip
        if (match := re.fullmatch(r"/[^/]+/[^/]+/resolve/[^/]+/(.+)", path)) and match[1] in self.files:
            body = self.files[match[1]]
            headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{self.oid(body)}"', "Content-Length": str(len(body))}
            return httpx2.Response(200, headers=headers, content=b"" if request.method == "HEAD" else body)
        return httpx2.Response(404, request=request)

    @staticmethod
    def oid(body: bytes) -> str:
        return hashlib.sha1(body).hexdigest()

    def fetched(self) -> set[str]:
        """The files whose contents were asked for."""
        return {path.rsplit("/resolve/" + COMMIT + "/", 1)[-1] for path in self.paths if "/resolve/" in path}


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """A function of a repository's files that serves them as the Hub would, to the real client, online."""
    httpx2 = pytest.importorskip("httpx2")
    from huggingface_hub.utils import _http

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def serve(files: dict[str, bytes]) -> FakeHub:
        hub = FakeHub(files)
        _http.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(hub), follow_redirects=True))
        return hub

    yield serve
    _http.set_client_factory(_http.default_client_factory)


def repository(*extra: str) -> dict[str, bytes]:
    """The tiny SEDD model's files, with code and pickles beside them that must never be fetched."""
    files = {name: (SEDD_TINY / name).read_bytes() for name in ("config.json", "model.safetensors")}
    return {**files, **{name: b"import os  # never fetched\n" for name in extra}}


def test_only_json_and_safetensors_are_fetched(fake_hub):
    hub = fake_hub(repository("modeling.py", "pytorch_model.bin", "tokenizer.model", "run.sh"))
    loaded = scorediff.load("someone/sedd-tiny")
    assert hub.fetched() == {"config.json", "model.safetensors"}
    assert sorted(path.name for path in loaded.path.iterdir()) == ["config.json", "model.safetensors"]
    assert torch.equal(scores(loaded), scores(scorediff.load(SEDD_TINY)))


def test_without_safetensors_only_pytorch_model_bin_is_added(fake_hub, tmp_path):
    from safetensors.torch import load_file

    pickled = tmp_path / "weights.bin"
    torch.save(load_file(SEDD_TINY / "model.safetensors"), pickled)
    files = {**repository("modeling.py", "optimizer.bin"), "pytorch_model.bin": pickled.read_bytes()}
    del files["model.safetensors"]
    hub = fake_hub(files)
    loaded = scorediff.load("someone/sedd-pickled")
    assert hub.fetched() == {"config.json", "pytorch_model.bin"}
    assert torch.equal(scores(loaded), scores(scorediff.load(SEDD_TINY)))


@pytest.mark.parametrize(
    "status, code, spec, message",
    [
        (403, "GatedRepo", "someone/gated", r"someone/gated is gated on the Hub: accept its terms and log in"),
        (401, "RepoNotFound", "someone/absent", r"someone/absent is neither a local folder nor a model on the Hub"),
        (404, "RevisionNotFound", "someone/sedd-tiny@v9", r"someone/sedd-tiny has no revision 'v9' on the Hub$"),
        (503, "", "someone/sedd-tiny", r"someone/sedd-tiny is not in the Hub cache and the Hub cannot be reached"),
    ],
)
def test_the_hubs_refusals_are_one_line(fake_hub, capsys, status, code, spec, message):
    """Each error class the client raises from the Hub's answer gets its own one-line message."""
    hub = fake_hub(repository())
    hub.errors[r"^/api/models/"] = (status, code)
    assert_user_error(capsys, ["info", "--checkpoint", spec], message)
    with pytest.raises(CheckpointError, match=message):
        scorediff.load(spec)
