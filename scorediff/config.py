"""Run configuration: nested dataclasses, YAML presets and ``section.key=value`` overrides.

The resolved configuration is saved as ``config.json`` in every checkpoint, so ``sample`` and ``eval``
need nothing but the checkpoint. The sections' dataclasses are in ``scorediff.config_sections`` (``train`` in
``scorediff.train_config``, ``model`` in ``scorediff.model.config``); this module
gathers them into ``RunConfig`` and reads, coerces and overrides their values.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .config_sections import DataConfig, DiffusionConfig, OptimConfig, SamplingConfig
from .errors import ScorediffError
from .model.transformer import ModelConfig
from .train_config import TrainConfig

PRESET_DIR = Path(__file__).parent / "configs"
OBJECTIVES = ("autoregressive", "diffusion")


class ConfigError(ScorediffError):
    """A configuration the user wrote cannot be used; the message says what was expected."""


@dataclass
class RunConfig:
    """Everything a training run needs."""

    preset: str = "custom"
    """The preset or YAML file the run started from (set by ``--config``; the default run name starts with it)."""
    objective: str = "diffusion"
    """``diffusion`` (score entropy) or ``autoregressive`` (the next-token baseline)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def __post_init__(self):
        for name, cls in SECTIONS.items():  # ``model=5`` was accepted, and failed wherever it was first read
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(f"{name} must be a {cls.__name__}; got {getattr(self, name)!r:.80}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _coerce(value: Any, kind: type, where: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where} expects true or false; got {value!r}")
    if kind is int:
        number = _integer(value)
        if number is None:
            raise ConfigError(f"{where} expects an integer; got {value!r}")
        return number
    if kind is float:
        try:
            number = float(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or not math.isfinite(number):
            raise ConfigError(f"{where} expects a finite number; got {value!r}")
        return number
    if not isinstance(value, str):
        raise ConfigError(f"{where} expects text; got {value!r}")
    return value


def _integer(value: Any) -> int | None:
    """``value`` as an exact integer (``"12"``, ``12``, ``1e3``, ``"1e3"``; big ones without going through
    float), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) and number.is_integer() else None


def _types(cls) -> dict[str, type]:
    hints = {"int": int, "float": float, "bool": bool, "str": str}
    return {f.name: hints.get(f.type if isinstance(f.type, str) else f.type.__name__, str) for f in fields(cls)}


def _section(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping; got {values!r}")
    known = _types(cls)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown option {where}.{unknown[0]}; valid: {', '.join(sorted(known))}")
    coerced = {k: _coerce(v, known[k], f"{where}.{k}") for k, v in values.items()}
    try:
        return cls(**coerced)
    except ValueError as error:
        raise ConfigError(f"{where}.{error}") from None


SECTIONS = {
    "model": ModelConfig,
    "diffusion": DiffusionConfig,
    "data": DataConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
    "sampling": SamplingConfig,
}


def config_from_dict(values: dict) -> RunConfig:
    """Build a ``RunConfig``; unknown sections or options raise ``ConfigError`` listing the valid ones."""
    unknown = sorted(set(values) - set(SECTIONS) - {"preset", "objective"})
    if unknown:
        raise ConfigError(f"unknown config section {unknown[0]!r}; valid: {', '.join(sorted(SECTIONS))}")
    objective = str(values.get("objective", "diffusion"))
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {objective!r}; expected one of {list(OBJECTIVES)}")
    built = {name: _section(cls, values.get(name, {}) or {}, name) for name, cls in SECTIONS.items()}
    return RunConfig(preset=str(values.get("preset", "custom")), objective=objective, **built)


def presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        values = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError, RecursionError) as error:  # recursion: nested too deep
        raise ConfigError(f"cannot read config {path}: {str(error).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config {path} must hold a mapping of sections")
    return values


def load_config(name_or_path: str = "tiny", overrides: list[str] | None = None) -> RunConfig:
    """A preset name (``tiny``, ``small``, ``medium``, ...) or a YAML file, then ``section.key=value`` overrides."""
    if not isinstance(name_or_path, str | os.PathLike) or not str(name_or_path).strip():
        raise ConfigError(f"config must be a preset name {presets()} or a .yaml file; got {name_or_path!r}")
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if path.is_dir():
            raise ConfigError(f"config {path} is a folder; expected a preset {presets()} or a .yaml file")
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        values = _read_yaml(path)
        values.setdefault("preset", path.stem)
    elif name_or_path in presets():
        values = _read_yaml(PRESET_DIR / f"{name_or_path}.yaml")
        values["preset"] = name_or_path
    else:
        raise ConfigError(f"unknown preset {name_or_path!r}; expected one of {presets()} or a .yaml file")
    return config_from_dict(apply_overrides(values, overrides or []))


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """``section.key=value`` strings applied to a nested dict of configuration values."""
    values = {k: dict(v) if isinstance(v, dict) else v for k, v in values.items()}
    for override in overrides:
        key, sep, value = override.removeprefix("--").partition("=")
        section, dot, option = key.partition(".")
        if not sep or not dot or not option:
            raise ConfigError(f"overrides look like section.key=value; got {override!r}")
        if section not in SECTIONS:
            raise ConfigError(f"unknown config section {section!r}; valid: {', '.join(sorted(SECTIONS))}")
        values[section] = dict(values.get(section) or {}, **{option: value})
    return values


def override_config(config: RunConfig, overrides: list[str]) -> RunConfig:
    """A copy of ``config`` with ``section.key=value`` overrides applied."""
    return config_from_dict(apply_overrides(config.to_dict(), overrides))
