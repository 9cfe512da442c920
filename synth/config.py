"""Settings of the data engine (config section `synth`, shipped defaults in configs/synth.toml)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field


class ApiSettings(BaseModel):
    """The OpenAI-compatible endpoint that writes, verifies and solves the tasks."""

    base_url: str = Field("http://127.0.0.1:8080/v1", description="OpenAI-compatible base URL")
    model: str = Field("default", description="model name sent with each request")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the key")
    concurrency: int = Field(8, ge=1, description="requests (and items) in flight at once")
    timeout_s: float = Field(120.0, gt=0, description="per request")
    max_retries: int = Field(5, ge=0, description="retries on 429, 5xx, timeouts, broken responses")
    backoff_base_s: float = Field(1.0, ge=0, description="first retry waits about this long")
    backoff_max_s: float = Field(60.0, ge=0, description="cap on one wait")
    response_format: Literal["json_object", "json_schema", "none"] = Field(
        "json_object", description="how structured replies are requested"
    )


class Prices(BaseModel):
    """USD per million tokens."""

    input_per_mtok: float = Field(0.0, ge=0)
    output_per_mtok: float = Field(0.0, ge=0)


class QueriesSettings(BaseModel):
    calls: int = Field(10, ge=1, description="query-writing calls; each asks for `per_call` queries")
    per_call: int = Field(10, ge=1)
    temperature: float = Field(1.0, ge=0)
    examples_per_call: int = Field(3, ge=1, description="seed examples shown in each call")
    duplicate_threshold: float = Field(
        0.8, gt=0, le=1, description="cosine similarity at or above which a query is a near-duplicate"
    )
    max_tokens: int = Field(2048, ge=1)


class FileContentSettings(BaseModel):
    temperature: float = Field(0.7, ge=0)
    max_files: int = Field(3, ge=1)
    require_files: bool = Field(True, description="drop queries that need no file")
    max_tokens: int = Field(1024, ge=1)


class FilesSettings(BaseModel):
    image_pool: Path | None = Field(None, description="folder indexed by `t3edge synth index-images`")
    min_image_similarity: float = Field(0.1, ge=0, le=1, description="below it no pool image fits")
    code_timeout_s: float = Field(60.0, gt=0, description="limit for the code that makes one file")
    temperature: float = Field(0.2, ge=0)
    max_tokens: int = Field(2048, ge=1)


class VerifyQuerySettings(BaseModel):
    temperature: float = Field(0.0, ge=0)
    use_updated_query: bool = Field(True, description="take the verifier's `updated_query` when given")
    max_file_chars: int = Field(6000, ge=100, description="markdown of a non-image file, truncated")
    max_tokens: int = Field(1024, ge=1)


class TrajectorySettings(BaseModel):
    max_steps: int = Field(8, ge=1)
    max_errors: int = Field(3, ge=1)
    temperature: float = Field(0.0, ge=0)
    max_tokens: int = Field(1024, ge=1)


class VerifyTrajSettings(BaseModel):
    temperature: float = Field(0.2, ge=0)
    max_tokens: int = Field(1024, ge=1)
    max_observation_chars: int = Field(2000, ge=100)


class ExportSettings(BaseModel):
    valid_fraction: float = Field(0.1, ge=0, lt=1, description="share of tasks in valid.jsonl")


class SynthConfig(BaseModel):
    run_dir: Path | None = Field(None, description="where the run lives (default: DATA_DIR/synth/default)")
    cache_dir: Path | None = Field(None, description="request cache (default: RUN/cache)")
    budget_usd: float | None = Field(None, ge=0, description="stop cleanly once this much is spent")
    api: ApiSettings = Field(default_factory=ApiSettings)
    prices: Prices = Field(default_factory=Prices)
    queries: QueriesSettings = Field(default_factory=QueriesSettings)
    file_content: FileContentSettings = Field(default_factory=FileContentSettings)
    files: FilesSettings = Field(default_factory=FilesSettings)
    verify_query: VerifyQuerySettings = Field(default_factory=VerifyQuerySettings)
    trajectories: TrajectorySettings = Field(default_factory=TrajectorySettings)
    verify_traj: VerifyTrajSettings = Field(default_factory=VerifyTrajSettings)
    export: ExportSettings = Field(default_factory=ExportSettings)
