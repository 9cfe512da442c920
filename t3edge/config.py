"""Layered TOML settings validated by pydantic.

Each section (`models`, `agent`, `synth`, `train`, `eval`) is a TOML file. Values come from, in
order: the shipped default `configs/<section>.toml`, the user's override in the platform config
folder (`t3edge config path`), an explicit `--config FILE`, then command-line flags. Every value
remembers where it came from, for `t3edge config show`.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any, TypeVar

import platformdirs
from pydantic import BaseModel, ValidationError

from t3edge.errors import T3Error

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

M = TypeVar("M", bound=BaseModel)

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "configs"

# The core's sections: name -> "module:Model", imported only when the section is loaded. The
# wings (the data engine, the app) add theirs as `t3edge.config` entry points (pyproject.toml).
CORE_SECTIONS: dict[str, str] = {
    "models": "t3edge.models:ModelsConfig",
    "agent": "t3edge.agent.config:AgentConfig",
    "eval": "t3edge.eval.config:EvalConfig",
    "train": "t3edge.train.config:TrainConfig",
}


def sections() -> dict[str, str]:
    """Every config section: the core's and those the installed wings register."""
    from importlib.metadata import entry_points

    return {**CORE_SECTIONS, **{ep.name: ep.value for ep in entry_points(group="t3edge.config")}}


def user_config_dir() -> Path:
    """The user's override folder (`T3EDGE_CONFIG_DIR` wins over the platform default)."""
    env = os.environ.get("T3EDGE_CONFIG_DIR")
    return Path(env) if env else platformdirs.user_config_path("t3edge")


def data_dir() -> Path:
    """Where t3edge keeps runs, sessions and caches (`T3EDGE_DATA_DIR` wins)."""
    env = os.environ.get("T3EDGE_DATA_DIR")
    return Path(env) if env else platformdirs.user_data_path("t3edge")


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise T3Error(f"config file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise T3Error(f"invalid TOML in {path}: {exc}", hint="fix the file or remove it") from exc


def _merge(base: dict[str, Any], over: dict[str, Any], sources: dict[str, str], source: str,
           prefix: str = "") -> None:
    for key, value in over.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, sources, source, dotted + ".")
        else:
            base[key] = value
            _mark(value, sources, source, dotted)


def _mark(value: Any, sources: dict[str, str], source: str, dotted: str) -> None:
    for k in [k for k in sources if k == dotted or k.startswith(dotted + ".")]:
        del sources[k]
    if isinstance(value, dict):
        for k, v in value.items():
            _mark(v, sources, source, f"{dotted}.{k}")
    else:
        sources[dotted] = source


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """{"a.b": 1} -> {"a": {"b": 1}}; None values (flags not given) are dropped."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if value is None:
            continue
        node = out
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return out


class Layered(BaseModel):
    """A loaded section: the validated values and, per dotted key, where each came from."""

    values: dict[str, Any]
    sources: dict[str, str]


def layers(section: str, *, file: str | Path | None = None,
           overrides: dict[str, Any] | None = None) -> Layered:
    data: dict[str, Any] = {}
    sources: dict[str, str] = {}
    candidates = [
        (SHIPPED_DIR / f"{section}.toml", "default"),
        (user_config_dir() / f"{section}.toml", "user"),
    ]
    for path, label in candidates:
        if path.is_file():
            _merge(data, read_toml(path), sources, f"{label} ({path})")
    if file is not None:
        _merge(data, read_toml(Path(file)), sources, f"--config ({file})")
    if overrides:
        _merge(data, unflatten(overrides), sources, "command line")
    return Layered(values=data, sources=sources)


def load_config(section: str, model: type[M], *, file: str | Path | None = None,
                overrides: dict[str, Any] | None = None) -> M:
    """The effective settings of `section`, validated by `model`."""
    layered = layers(section, file=file, overrides=overrides)
    try:
        validated = model.model_validate(layered.values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        origin = layered.sources.get(where, "the config files")
        raise T3Error(
            f"invalid setting {section}.{where}: {first['msg']} (from {origin})",
            hint=f"fix it, or see `t3edge config show {section}`",
        ) from exc
    unknown = unknown_keys(model, layered.values)
    if unknown:
        key = unknown[0]
        origin = next((v for k, v in layered.sources.items() if k == key or k.startswith(key + ".")),
                      "the config files")
        raise T3Error(f"unknown setting {section}.{key} (from {origin})",
                      hint=f"check its spelling; `t3edge config show {section}` lists every setting")
    return validated


def unknown_keys(model: type[BaseModel], values: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys of `values` that `model` (and the models nested in it) has no field for, so a
    misspelt setting is reported instead of silently ignored."""
    if model.model_config.get("extra") == "allow":
        return []
    fields = {f.alias or name: f for name, f in model.model_fields.items()}
    unknown: list[str] = []
    for key, value in values.items():
        field = fields.get(key) or model.model_fields.get(key)
        if field is None:
            unknown.append(f"{prefix}{key}")
        elif (isinstance(value, dict) and isinstance(field.annotation, type)
              and issubclass(field.annotation, BaseModel)):
            unknown += unknown_keys(field.annotation, value, f"{prefix}{key}.")
    return unknown


def section_model(section: str) -> type[BaseModel]:
    known = sections()
    if section not in known:
        raise T3Error(f"unknown config section {section!r}", hint=f"one of: {', '.join(known)}")
    module, _, attr = known[section].partition(":")
    return getattr(importlib.import_module(module), attr)


def effective(section: str, *, file: str | Path | None = None,
              overrides: dict[str, Any] | None = None) -> list[tuple[str, Any, str]]:
    """(dotted key, effective value, source) for every leaf of a section, defaults included."""
    model = section_model(section)
    layered = layers(section, file=file, overrides=overrides)
    validated = load_config(section, model, file=file, overrides=overrides)
    rows: list[tuple[str, Any, str]] = []

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        else:
            rows.append((prefix, value, layered.sources.get(prefix, "built-in")))

    walk(validated.model_dump(mode="json"), "")
    return rows
