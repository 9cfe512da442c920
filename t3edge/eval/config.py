"""Settings of evaluation runs: section `eval` (shipped in configs/eval.toml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field


class EvalConfig(BaseModel):
    max_steps: int = Field(8, ge=1, description="agent steps per item (the paper evaluates with 8)")
    max_errors: int = Field(5, ge=1, description="errors before an item's run stops (the paper: 5)")
    gta_tools: bool = Field(True, description="GTA items run with GTA's own tool names (like-for-like tool metrics)")
    embedding_model: str | None = Field(
        "sentence-transformers/all-mpnet-base-v2",
        description="sentence-transformers model for GTA's similarity scores (GTA's own choice)",
    )
    embedding_url: str | None = Field(None, description="OpenAI-compatible base URL serving /embeddings instead")
    embedding_api_key_env: str = Field("OPENAI_API_KEY", description="env var with the endpoint's key")
    gta_repo: str = "Jize1/GTA"
    gaia_repo: str = "gaia-benchmark/GAIA"
    gaia_split: Literal["validation", "test"] = Field(
        "validation", description="validation (answers public) or test (hidden)")
    out_dir: Path | None = Field(None, description="where runs go (default: <data dir>/eval)")
    jobs: int | None = Field(
        None, ge=1, le=64,
        description="items run at once; None: 4 against a server on another machine, else 1 (a "
                    "model on this machine takes one call at a time: more pays only when code and "
                    "tools take much of an item's time)")
    fsync: bool = Field(True, description="fsync each result line (survives power loss, not only kills)")
    plot: bool = True


def load_eval_config(overrides: dict[str, Any] | None = None, file: str | Path | None = None) -> EvalConfig:
    from t3edge.config import load_config

    return load_config("eval", EvalConfig, file=file, overrides=overrides)
