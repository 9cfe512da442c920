"""What a backend is given: the files (or URL) of the model to load and the load settings
(section `models`, table `backend`). The registry (`t3edge.models`) fills them in; backends never
read the registry."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

BackendKind = Literal["mlx", "gguf", "openai", "replay"]


class BackendSettings(BaseModel):
    context_length: int | None = Field(None, description="override the model's context size")
    n_threads: int | None = Field(None, description="CPU threads for llama.cpp (None: all cores)")
    n_gpu_layers: int = Field(-1, description="llama.cpp layers to offload (-1: all, where a GPU build)")
    f32_kv_cache: bool = False
    llama_extra_buffers: bool | None = Field(
        None, description="llama.cpp's extra CPU buffer types (AMX, repacked weights); None: off on AMX CPUs")
    max_image_pixels: int = Field(1024 * 28 * 28, description="cap per image (memory guard)")
    openai_base_url: str | None = None
    openai_api_key_env: str = "OPENAI_API_KEY"
    openai_model: str | None = None
    timeout_s: float = 120.0
    max_retries: int = 4


class ModelFiles(BaseModel):
    """The model a backend loads: a folder or file (`path`, with a vision projector `mmproj`), or
    an OpenAI-compatible `url` and the server's `remote_model`."""

    spec: str
    kind: BackendKind
    path: str | None = None  # MLX/HF folder, GGUF file or replay file
    mmproj: str | None = None
    url: str | None = None
    remote_model: str | None = None


def configured_settings() -> BackendSettings:
    """The `backend` table of the `models` settings, for code that has no registry at hand."""
    from t3edge.config import layers

    return BackendSettings.model_validate(layers("models").values.get("backend", {}))
