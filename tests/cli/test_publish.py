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
