"""Stage 2: for each query the model splits the needed information into "from the internet" and
"from files" and describes every file (type and content)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from synth.engine import RunContext, Step
from synth.errors import Rejected
from synth.items import FileSpec, SynthItem
from synth.prompts import FILE_CONTENT_SYSTEM, FILE_TYPES, file_content_prompt
from t3edge.backends.base import Message

STAGE = "file_content"
_ALIASES = {"jpeg": "jpg", "markdown": "md", "text": "txt", "excel": "xlsx", "word": "docx"}


class FileInfo(BaseModel):
    file_type: str
    file_content: str


class FileContentReply(BaseModel):
    information_from_internet: str = ""
    information_from_files: str = ""
    file_numbers: int | None = None
    file_information: dict[str, FileInfo] = Field(default_factory=dict)


def normalize_type(file_type: str) -> str:
    t = file_type.strip().lower().lstrip(".")
    return _ALIASES.get(t, t)


def file_specs(reply: FileContentReply, max_files: int, require_files: bool) -> list[FileSpec]:
    """The described files, checked: known types, non-empty content, not too many."""
    specs = []
    for i, info in enumerate(reply.file_information.values(), 1):
        file_type = normalize_type(info.file_type)
        if file_type not in FILE_TYPES:
            raise Rejected("unsupported_file_type", file_type)
        if not info.file_content.strip():
            raise Rejected("empty_file_description", f"file_{i}")
        specs.append(FileSpec(name=f"file_{i}", file_type=file_type, file_content=info.file_content.strip()))
    if len(specs) > max_files:
        raise Rejected("too_many_files", f"{len(specs)} > {max_files}")
    if require_files and not specs:
        raise Rejected("no_files", "the query needs no file")
    return specs


async def describe_files(ctx: RunContext, item: SynthItem) -> SynthItem:
    cfg = ctx.cfg.file_content
    messages = [Message("system", FILE_CONTENT_SYSTEM),
                Message("user", file_content_prompt(item.query, item.tools, cfg.max_files))]
    reply = await ctx.client.structured(STAGE, messages, FileContentReply,
                                        temperature=cfg.temperature, max_tokens=cfg.max_tokens)
    specs = file_specs(reply, cfg.max_files, cfg.require_files)
    return item.model_copy(update={
        "file_specs": specs, "information_from_internet": reply.information_from_internet or None,
    })


INPUT = "queries"
STEP = Step(STAGE, describe_files)
