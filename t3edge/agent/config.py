"""Settings of the agent loop and its executor: section `agent` (shipped in configs/agent.toml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from t3edge.backends.base import GenerationConfig
from t3edge.protocol import STOP_STRINGS

DEFAULT_IMPORTS = [
    "os", "PIL", "cv2", "pandas", "numpy", "matplotlib", "sympy", "PyPDF2", "pptx",
    "math", "re", "json", "collections", "datetime", "statistics", "itertools",
]


class AgentConfig(BaseModel):
    max_steps: int = Field(8, ge=1, description="model calls before the final-answer request")
    max_errors: int = Field(5, ge=1, description="parse + code errors before the run stops")
    max_repeats: int = Field(2, ge=1, description="steps repeating earlier code before the run ends as `loop`")
    prompt: Literal["auto", "full", "compact"] = Field(
        "auto", description="system prompt: full, compact (small contexts), or auto by context length")
    compact_below_context: int = Field(16384, ge=0, description="auto: compact below this context length")
    format: Literal["free", "constrained"] = Field(
        "constrained", description="constrained: decode each step in the Thought/Code format by grammar "
                                   "where the backend can (llama.cpp, MLX, servers that take a grammar)")
    approve: Literal["never", "ask"] = Field(
        "never", description="ask: show each code block and let the user run, edit or reject it "
                             "(the command line and the app; evaluation and synthesis never ask)")
    step_timeout_s: float = Field(30.0, gt=0, description="wall time of one code block")
    tool_timeout_s: float | None = Field(
        None, gt=0, description="wall time of one tool call (unset: the rest of its step's time); a call "
                                "cut at this limit is an error the code can handle")
    memory_mb: int = Field(4096, ge=256, description="address-space limit of the sandbox process")
    sandbox_start: Literal["fork", "spawn"] = Field(
        "fork", description="fork: each run's sandbox is forked from a prepared process, in milliseconds "
                            "(Linux; elsewhere spawn); spawn: a new interpreter each time (about a second)")
    file_size_mb: int = Field(256, ge=1, description="largest file sandboxed code may write")
    max_observation_chars: int = Field(20000, ge=200)
    allowed_imports: list[str] = Field(default_factory=lambda: list(DEFAULT_IMPORTS))
    web: bool = Field(False, description="let ask_search_agent search the web")
    workspace: Path | None = Field(None, description="root of per-run working folders")
    generation: GenerationConfig = Field(
        default_factory=lambda: GenerationConfig(max_tokens=1024, stop=list(STOP_STRINGS))
    )

    @field_validator("generation")
    @classmethod
    def _protocol_stops(cls, gen: GenerationConfig) -> GenerationConfig:
        """The protocol's stop strings are always in force, whatever the config says."""
        missing = [s for s in STOP_STRINGS if s not in gen.stop]
        return gen.model_copy(update={"stop": [*gen.stop, *missing]}) if missing else gen


def load_agent_config(overrides: dict[str, Any] | None = None, file: str | Path | None = None) -> AgentConfig:
    """The effective `agent` settings (shipped defaults, user file, `file`, then overrides)."""
    from t3edge.config import load_config

    return load_config("agent", AgentConfig, file=file, overrides=overrides)
