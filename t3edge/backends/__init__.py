"""Backends: one interface (`base.Backend`); `t3edge.loading.load_backend` loads one by model name."""

from __future__ import annotations

from t3edge.backends.base import (
    Backend, Completion, GenerationConfig, ImagePart, Message, TextDelta, TextPart, Usage,
)

__all__ = ["Backend", "Completion", "GenerationConfig", "ImagePart", "Message", "TextDelta", "TextPart", "Usage"]
