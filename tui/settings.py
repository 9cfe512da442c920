"""Settings of the terminal app (`tui` config section) and the state it remembers between runs."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from t3edge.config import data_dir, load_config


class TuiConfig(BaseModel):
    """The `[tui]` section: configs/tui.toml, overridden by the user's tui.toml."""

    model: str | None = Field(None, description="model used when --model is not given (None: the registry default)")
    keymap: dict[str, str] = Field(
        default_factory=dict,
        description="binding id -> keys, e.g. prompt.newline = \"ctrl+j,alt+enter\" (ids in docs/tui.md)",
    )
    context_warn_ratio: float = Field(0.85, gt=0.0, le=1.0, description="warn when context use passes this share")
    export_dir: str | None = Field(None, description="where exports go (None: <data dir>/exports)")
    image_previews: bool = Field(True, description="show images inline where the terminal supports it")


def load_tui_config() -> TuiConfig:
    return load_config("tui", TuiConfig)


def tui_dir() -> Path:
    """The app's folder inside the t3edge data folder (sessions database, state, exports)."""
    return data_dir() / "tui"


class TuiState(BaseModel):
    """What the app remembers between runs (not settings: the user never edits this)."""

    theme: str = "textual-dark"
    last_model: str | None = None

    @classmethod
    def path(cls) -> Path:
        return tui_dir() / "state.json"

    @classmethod
    def load(cls) -> TuiState:
        try:
            return cls.model_validate_json(cls.path().read_text(encoding="utf-8"))
        except (OSError, ValidationError, ValueError):
            return cls()

    def save(self) -> None:
        path = self.path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.model_dump(), indent=1), encoding="utf-8")
        tmp.replace(path)
