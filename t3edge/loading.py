"""From a model name to a loaded backend: the registry (`t3edge.models`) resolves the name to
files or a URL, and the backend for its kind loads them. The one entry point is `load_backend`."""

from __future__ import annotations

from t3edge.backends.base import Backend
from t3edge.models import BackendKind, ModelsConfig, ResolvedModel, load_models_config, resolve_model


def load_backend(spec: str, *, backend: BackendKind | None = None, adapter: str | None = None,
                 config: ModelsConfig | None = None) -> Backend:
    """Load the backend for a model name, local path, GGUF file, URL or `replay:FILE`.

    `backend` forces MLX or GGUF for a registry name; `adapter` is a LoRA adapter
    (MLX folder for MLX, GGUF LoRA for llama.cpp). Without one, a registry entry that names an
    adapter (`adapter_repo`) runs with the adapter `t3edge models pull` converted for its backend.
    """
    cfg = config or load_models_config()
    resolved = resolve_model(spec, cfg, backend, with_adapter=adapter is None)
    return backend_for(resolved, cfg, adapter=adapter if adapter is not None else resolved.adapter)


def backend_for(resolved: ResolvedModel, cfg: ModelsConfig, *, adapter: str | None = None) -> Backend:
    """The loaded backend, carrying the registry entry's sampling settings (`generation_overrides`)."""
    backend = _load(resolved, cfg, adapter)
    if resolved.entry is not None:
        backend.generation_overrides = dict(resolved.entry.generation)
    return backend


def _load(resolved: ResolvedModel, cfg: ModelsConfig, adapter: str | None) -> Backend:
    if resolved.kind == "mlx":
        from t3edge.backends.mlx_text import MLXTextBackend, is_text_only

        if resolved.path and is_text_only(resolved.path):  # no vision part: mlx-lm runs it
            return MLXTextBackend(resolved, cfg.backend, adapter=adapter)
        from t3edge.backends.mlx import MLXBackend

        return MLXBackend(resolved, cfg.backend, adapter=adapter)
    if resolved.kind == "gguf":
        from t3edge.backends.llama import LlamaBackend

        return LlamaBackend(resolved, cfg.backend, adapter=adapter)
    if resolved.kind == "openai":
        from t3edge.backends.openai import OpenAIBackend

        return OpenAIBackend(resolved, cfg.backend)
    from t3edge.backends.replay import ReplayBackend

    return ReplayBackend(resolved)
