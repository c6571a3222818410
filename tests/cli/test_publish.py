"""Publishing: ``save_pretrained`` loads back to the same model; ``push`` uploads that folder through
``HfApi.create_repo`` and ``HfApi.upload_folder``, the client's two calls that go online, which the tests replace
(what reaches them is checked); bad input is one line."""

from pathlib import Path

import pytest
import torch
import yaml
from cli_run import assert_user_error, run_cli
from safetensors.torch import load_file

import scorediff
from scorediff.checkpoint import CheckpointError

hf_api = pytest.importorskip("huggingface_hub.hf_api")
PUBLISHED = ["README.md", "config.json", "model.safetensors", "tokenizer.json", "trainer_state.json"]
SEDD_TINY = Path(__file__).parents[1] / "fixtures" / "sedd_reference" / "tiny_absorb"


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_save_pretrained_loads_back_to_the_same_model(trained_run, tmp_path):
    loaded = scorediff.load(trained_run)
    folder = loaded.save_pretrained(tmp_path / "published", repo="me/tiny-shakespeare", license="mit")
    assert sorted(p.name for p in folder.iterdir()) == PUBLISHED
    again = scorediff.load(folder)
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[name], tensor), name
    assert load_file(folder / "model.safetensors").keys() == loaded.model.state_dict().keys()
    assert again.tokenizer.encode("To be, or not") == loaded.tokenizer.encode("To be, or not")
    assert again.step == loaded.step and again.info["tokens_seen"] == loaded.info["tokens_seen"]
    assert "optimizer" not in again.info
    x = torch.randint(0, loaded.objective.vocab_size - 1, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(again.model(x, torch.tensor([0.5, 1.5])), loaded.model(x, torch.tensor([0.5, 1.5])))
    card = (folder / "README.md").read_text()
    assert front_matter(card) == {
        "library_name": "scorediff", "license": "mit", "pipeline_tag": "text-generation",
        "tags": ["scorediff", "text-generation", "discrete-diffusion", "sedd", "absorbing-graph"],
    }  # fmt: skip
    assert f"{loaded.info['val_bits_per_token']:.4f} bits per token" in card
    assert "scorediff eval --checkpoint me/tiny-shakespeare" in card and f"steps: {loaded.step}" in card


def test_push_uploads_the_folder_through_upload_folder(trained_ar_run, capsys, monkeypatch):
    sent = {}

    def create_repo(self, repo_id, **options):
        sent["repo"] = (repo_id, options.get("private"))
        return hf_api.RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, commit_message, **options):
        sent["files"] = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        sent["message"] = commit_message
        return hf_api.CommitInfo(
            commit_url=f"https://huggingface.co/{repo_id}/commit/abc", commit_message=commit_message,
            commit_description="", oid="abc", pr_url=None,
        )  # fmt: skip

    monkeypatch.setattr(hf_api.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(hf_api.HfApi, "upload_folder", upload_folder)
    code, out, err = run_cli(capsys, ["push", "--checkpoint", str(trained_ar_run), "--repo", "me/tiny-ar", "--private"])
    assert code == 0, err
    assert sent["repo"] == ("me/tiny-ar", True) and "https://huggingface.co/me/tiny-ar/commit/abc" in out
    assert set(sent["files"]) == {
        "README.md",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "trainer_state.json",
    }
    card = sent["files"]["README.md"].decode()
    assert front_matter(card)["tags"] == ["scorediff", "text-generation"] and "exact NLL" in card
    assert "autoregressive" in sent["message"]


def test_publishing_refuses_bad_input_in_one_line(trained_run, capsys, monkeypatch, tmp_path):
    base = ["push", "--checkpoint", str(trained_run)]
    assert_user_error(capsys, [*base, "--repo", "not-an-id"], r"--repo must be a Hub id like user/name")
    assert_user_error(capsys, [*base, "--repo", "me/x@v1"], r"--repo must be a Hub id")
    sedd = ["push", "--checkpoint", str(SEDD_TINY), "--repo", "me/x", "--local", str(tmp_path / "out")]
    assert_user_error(capsys, sedd, r"converted SEDD model; only scorediff checkpoints are published")
    assert not (tmp_path / "out").exists()

    def refuse(self, repo_id, **options):
        raise PermissionError("401 Client Error: Unauthorized for url: https://huggingface.co/api/repos/create")

    monkeypatch.setattr(hf_api.HfApi, "create_repo", refuse)
    assert_user_error(capsys, [*base, "--repo", "me/x"], r"uploading to me/x failed: 401 Client Error: Unauthorized")


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` (relative path -> bytes) and every folder (-> None)."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def test_push_local_never_replaces_a_users_folder_or_file(trained_run, capsys, tmp_path):
    base = ["push", "--checkpoint", str(trained_run), "--repo", "me/x", "--local"]
    thesis = tmp_path / "thesis"
    (thesis / "figures").mkdir(parents=True)
    (thesis / "thesis.tex").write_text("\\section{Results}\n")
    (thesis / "figures" / "a.png").write_bytes(b"png")
    before = snapshot(thesis)
    assert_user_error(capsys, [*base, str(thesis)], r"cannot publish into .*thesis: it holds figures, thesis.tex; give")
    assert snapshot(thesis) == before
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert_user_error(capsys, [*base, str(notes)], r"cannot write into .*notes.txt: it is a file")
    assert notes.read_text() == "mine"
    # A folder holding only files save_pretrained writes, but not written by it (no scorediff card): refused too.
    lookalike = tmp_path / "lookalike"
    lookalike.mkdir()
    (lookalike / "config.json").write_text("{}")
    assert_user_error(capsys, [*base, str(lookalike)], r"it holds config.json; give a new or empty folder")
    assert (lookalike / "config.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lookalike", "notes.txt", "thesis"]  # no .tmp-* debris


def test_push_local_never_touches_the_run(trained_run, capsys):
    before = snapshot(trained_run)
    base = ["push", "--checkpoint", str(trained_run), "--repo", "me/x", "--local"]
    assert_user_error(capsys, [*base, str(trained_run)], r"it holds .*checkpoints, metrics.jsonl")
    assert_user_error(capsys, [*base, str(trained_run / "export")], r"it is inside the checkpoint")
    assert_user_error(capsys, [*base, str(trained_run.parent)], r"cannot publish into .*: it holds")
    assert snapshot(trained_run) == before


def test_save_pretrained_writes_new_or_empty_folders_and_replaces_only_its_own(trained_run, tmp_path):
    loaded = scorediff.load(trained_run)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert sorted(p.name for p in loaded.save_pretrained(empty).iterdir()) == PUBLISHED
    first = (empty / "README.md").read_text()
    loaded.save_pretrained(empty, repo="me/renamed")  # its own folder: replaced whole
    assert (empty / "README.md").read_text() != first and "# me/renamed" in (empty / "README.md").read_text()
    again = scorediff.load(empty)
    again.save_pretrained(empty, repo="me/third")  # loaded from the folder it replaces
    assert "# me/third" in (empty / "README.md").read_text()
    (empty / "notes.md").write_text("mine")  # a user's file added: no longer only ours
    with pytest.raises(CheckpointError, match=r"it holds notes.md"):
        loaded.save_pretrained(empty)
    assert (empty / "notes.md").read_text() == "mine"
    existing = tmp_path / "file"
    existing.write_text("mine")
    with pytest.raises(CheckpointError, match=r"it is a file"):
        loaded.save_pretrained(existing)
    assert existing.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file"]  # no .tmp-old-* left anywhere
    assert sorted(p.name for p in empty.iterdir()) == sorted([*PUBLISHED, "notes.md"])
