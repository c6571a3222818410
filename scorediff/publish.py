"""Publishing a checkpoint: a folder the Hub can serve (``save_pretrained``) and its upload (``push_to_hub``).

The folder holds what ``scorediff.load`` needs and nothing else: ``config.json`` (the checkpoint's, unchanged),
``model.safetensors`` (the weights that were loaded: the EMA average when the checkpoint has one),
``tokenizer.json``, ``trainer_state.json`` (step, tokens seen and the validation bound, without optimizer state)
and ``README.md``, a model card with YAML front matter. It loads back with ``scorediff.load`` to the same
network, and the upload goes through ``huggingface_hub.HfApi.upload_folder``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml
from safetensors.torch import save_file

from .checkpoint import CONFIG_FILE, MODEL_FILE, TRAINER_FILE, CheckpointError
from .fileio import atomic_directory
from .hub import HUB_ID, INSTALL
from .version import __version__

CARD_FILE = "README.md"


def save_pretrained(loaded, directory: str | Path, *, repo: str | None = None, license: str = "other") -> Path:
    """Write ``loaded`` (a ``scorediff.Loaded`` of a scorediff checkpoint) into ``directory``, whole or not at
    all; ``repo`` is the Hub id the card's commands name (default: the folder)."""
    if loaded.layout != "scorediff" or loaded.config is None:
        raise CheckpointError(
            f"{loaded.source or loaded.path} is a converted {loaded.layout} model; only scorediff checkpoints are "
            "published (the original is on the Hub already)"
        )
    directory = Path(directory)
    state = {k: v.detach().contiguous().cpu() for k, v in loaded.model.state_dict().items()}
    info = {k: v for k, v in loaded.info.items() if k != "optimizer"}
    with atomic_directory(directory) as tmp:
        (tmp / CONFIG_FILE).write_text((loaded.path / CONFIG_FILE).read_text())
        save_file(state, str(tmp / MODEL_FILE), metadata={"weights": loaded.weights})
        if loaded.tokenizer is not None:
            loaded.tokenizer.save(tmp)
        (tmp / TRAINER_FILE).write_text(json.dumps(info, indent=2) + "\n")
        (tmp / CARD_FILE).write_text(model_card(loaded, repo or str(directory), license))
    return directory


def push_to_hub(loaded, repo: str, *, private: bool = False, license: str = "other", token: str | None = None) -> str:
    """Create ``repo`` (if needed) and upload the ``save_pretrained`` folder to it; returns the commit's URL."""
    if not HUB_ID.match(repo) or "@" in repo:
        raise CheckpointError(f"--repo must be a Hub id like user/name; got {repo!r}")
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise ImportError(f"uploading to the Hub needs huggingface_hub: {INSTALL}") from None
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as scratch:
        folder = save_pretrained(loaded, Path(scratch) / "model", repo=repo, license=license)
        try:
            api.create_repo(repo, private=private, exist_ok=True)
            commit = api.upload_folder(
                repo_id=repo, folder_path=folder, commit_message=f"Upload a scorediff {loaded.kind} model"
            )
        except Exception as error:  # the client's HTTP, auth and validation errors
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CheckpointError(f"uploading to {repo} failed: {first}") from None
    return str(getattr(commit, "commit_url", commit))


def model_card(loaded, repo: str, license: str) -> str:
    """``README.md``: front matter for the Hub, then what the model is, how it was trained and scored, and the
    commands that load, sample and evaluate it."""
    tags = ["scorediff", "text-generation"]
    if loaded.kind == "diffusion":
        tags += ["discrete-diffusion", "sedd", f"{loaded.config.diffusion.graph}-graph"]
    front = {"library_name": "scorediff", "license": license, "tags": tags, "pipeline_tag": "text-generation"}
    use = [
        "```bash",
        "pip install 'scorediff[hub]'",
        f"scorediff sample --checkpoint {repo} --num-samples 4",
        f"scorediff eval --checkpoint {repo}",
        "```\n",
        "```python",
        "import scorediff",
        f'loaded = scorediff.load("{repo}")',
        "```\n",
    ]
    sections = [
        f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n",
        f"# {repo}\n",
        _summary(loaded) + "\n",
        "## Use\n",
        *use,
        "## Training\n",
        *_training(loaded),
        "\n## Evaluation\n",
        *_evaluation(loaded, repo),
        "## Configuration\n",
        f"```yaml\n{yaml.safe_dump(loaded.config.to_dict(), sort_keys=False).rstrip()}\n```\n",
    ]
    return "\n".join(sections)


def _summary(loaded) -> str:
    config = loaded.config
    block = getattr(loaded.model.config, "block_size", 0)
    kind = f"block diffusion (blocks of {block})" if block else loaded.kind
    text = (
        f"A {kind} model trained with [scorediff](https://pypi.org/project/scorediff/) {__version__}: "
        f"{loaded.model.num_parameters():,} parameters, a context of {config.model.seq_len} tokens"
    )
    if loaded.kind == "diffusion":
        text += f", the {config.diffusion.graph} graph and the {config.diffusion.schedule} noise schedule"
    return text + "."


def _training(loaded) -> list[str]:
    info, seen = loaded.info, loaded.info.get("tokens_seen")
    tokenizer = f" ({loaded.tokenizer!r})" if loaded.tokenizer is not None else ""
    return [
        f"- data: `{loaded.config.data.source}`{tokenizer}",
        f"- steps: {info.get('step', 'not recorded')}",
        f"- tokens seen: {seen:,}" if isinstance(seen, int) else "- tokens seen: not recorded",
        f"- weights: {loaded.weights}",
    ]


def _evaluation(loaded, repo: str) -> list[str]:
    bound = loaded.info.get("val_bits_per_token")
    if bound is None:
        return ["No evaluation was recorded in the run.\n"]
    what = "its exact NLL" if loaded.objective.exact else "its likelihood bound (an upper bound on the NLL)"
    return [
        f"On the trainer's validation split at the last evaluation: {bound:.4f} bits per token, {what}. "
        "To score it again (on the data in the configuration below):\n",
        f"```bash\nscorediff eval --checkpoint {repo}\n```\n",
    ]
