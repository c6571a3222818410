"""Publishing a checkpoint: a folder the Hub can serve (``save_pretrained``) and its upload (``push_to_hub``).

The folder holds what ``scorediff.load`` needs and nothing else: ``config.json`` (the checkpoint's, unchanged),
``model.safetensors`` (the weights that were loaded: the EMA average when the checkpoint has one),
``tokenizer.json`` (with ``tokenizer_config.json`` and ``chat_template.jinja`` when the tokenizer has an end token or
a chat template), ``trainer_state.json`` (step, tokens seen and the validation bound, without optimizer state)
and ``README.md``, a model card with YAML front matter. It loads back with ``scorediff.load`` to the same
network, and the upload goes through ``huggingface_hub.HfApi.upload_folder``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import yaml
from safetensors.torch import save_file

from .checkpoint import CONFIG_FILE, MODEL_FILE, TRAINER_FILE, CheckpointError
from .data.chat import CONFIG_FILE as TOKENIZER_CONFIG_FILE
from .data.chat import TEMPLATE_FILE
from .data.tokenizers import TOKENIZER_FILE
from .errors import InputError
from .fileio import atomic_directory
from .hub import HUB_ID, INSTALL
from .version import __version__

CARD_FILE = "README.md"
#: every file ``save_pretrained`` writes; a folder holding only these, with a scorediff card, is one it wrote
PUBLISHED_FILES = frozenset(
    {CONFIG_FILE, MODEL_FILE, TOKENIZER_FILE, TOKENIZER_CONFIG_FILE, TEMPLATE_FILE, TRAINER_FILE, CARD_FILE}
)


def save_pretrained(loaded, directory: str | Path, *, repo: str | None = None, license: str = "other") -> Path:
    """Write ``loaded`` (a ``scorediff.Loaded`` of a scorediff checkpoint) into ``directory``, whole or not at
    all; ``repo`` is the Hub id the card's commands name (default: the folder).

    ``directory`` must be new, empty, or a folder this function wrote before (which is replaced whole): nothing
    else of a user's is ever replaced or deleted (see ``check_destination``).
    """
    if loaded.layout != "scorediff" or loaded.config is None:
        raise CheckpointError(
            f"{loaded.source or loaded.path} is a converted {loaded.layout} model; only scorediff checkpoints are "
            "published (the original is on the Hub already)"
        )
    if not isinstance(directory, str | os.PathLike) or not str(directory).strip():
        raise InputError(f"directory must be a folder path; got {directory!r}")
    if any(p.is_meta for p in loaded.model.parameters()):  # load(device="meta") read no weights to write
        raise InputError(f"{loaded.source or loaded.path} was loaded on the meta device, without weights to save")
    directory = Path(directory)
    check_destination(directory, loaded.path)
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


def check_destination(directory: Path, source: Path | None = None) -> None:
    """Refuse to publish into ``directory`` unless it is new, an empty folder, or an earlier ``save_pretrained``
    folder: only the files it writes, with a scorediff model card. A run or checkpoint directory never passes
    (it holds checkpoints, metrics or optimizer state, and no card), nor does a folder inside ``source``, the
    checkpoint being published."""
    if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
        kind = "a symbolic link" if directory.is_symlink() else "a file"
        raise CheckpointError(f"cannot publish into {directory}: it is {kind}; give a new or empty folder")
    if source is not None and _inside(directory, Path(source)):
        raise CheckpointError(f"cannot publish into {directory}: it is inside the checkpoint {source}; write elsewhere")
    names = sorted(p.name for p in directory.iterdir()) if directory.exists() else []
    if not names or _published_by_us(directory, names):
        return
    others = [n for n in names if n not in PUBLISHED_FILES] or names
    shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
    raise CheckpointError(
        f"cannot publish into {directory}: it holds {shown}; give a new or empty folder (or one written by "
        "save_pretrained/push --local before), so that nothing of yours is replaced"
    )


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` lies strictly inside ``folder`` (links resolved)."""
    return folder.absolute().resolve() in path.absolute().resolve().parents


def _published_by_us(directory: Path, names: list[str]) -> bool:
    """Whether ``directory`` holds only ``save_pretrained``'s files and a card with ``library_name: scorediff``."""
    if not set(names) <= PUBLISHED_FILES or CARD_FILE not in names:
        return False
    if any((directory / name).is_symlink() or not (directory / name).is_file() for name in names):
        return False
    try:
        head = (directory / CARD_FILE).read_text(encoding="utf-8")[:4096]
    except (OSError, UnicodeError):
        return False
    return head.startswith("---\n") and "\nlibrary_name: scorediff\n" in head.split("\n---\n", 1)[0] + "\n"


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
