"""What the loaders produce and the runner consumes: one benchmark item, its task, its answer key."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from t3edge.errors import BadInput


class ToolCall(BaseModel):
    """One tool call, by the benchmark's tool name, with its arguments (and error, when it failed)."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


def schema_error(source: str, item: str, exc: ValidationError, hint: str) -> BadInput:
    """A one-line error naming the item and the first field that does not match the schema."""
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "(record)"
    return BadInput(f"{source}: item {item}: field {field!r}: {first['msg']}", hint=hint)


Benchmark = Literal["gta", "gaia", "tasks"]
