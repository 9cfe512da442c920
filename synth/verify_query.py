"""Stage 4: the query-file verifier. The model sees the query with its files (images as pixels,
other files as text) and says whether the task is answerable from them; rejected tasks are dropped."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from synth.documents import file_as_text
from synth.engine import RunContext, Step
from synth.errors import Rejected
from synth.items import SynthItem
from synth.prompts import VERIFY_QUERY_SYSTEM
from t3edge.backends.base import ImagePart, Message, Part, TextPart
from t3edge.trajectory import Verdict, file_kind

STAGE = "verify_query"


class QueryVerdictReply(BaseModel):
    information_for_query: Any = ""
    useful_information_in_files: Any = ""
    missed_information_in_files: Any = ""
    missed_information_web_search: Any = ""
    missed_information_computed: Any = ""
    thought: str = ""
    correct: bool
    updated_query: str | None = None


def verifier_message(item: SynthItem, max_file_chars: int) -> list[Part]:
    """The query, then each file: an image as pixels, anything else as its text."""
    parts: list[Part] = [TextPart(f"Query: {item.query}\n\nFiles:")]
    for f in item.files:
        if file_kind(f.path) == "image":
            parts.append(TextPart(f"\n{f.name} ({f.file_type}), shown here:"))
            parts.append(ImagePart(f.path))
        else:
            text = file_as_text(f.path, max_file_chars)
            parts.append(TextPart(f"\n{f.name} ({f.file_type}), its content:\n{text}"))
    return parts


async def verify(ctx: RunContext, item: SynthItem) -> SynthItem:
    cfg = ctx.cfg.verify_query
    parts = await ctx.blocking(verifier_message, item, cfg.max_file_chars)
    messages = [Message("system", VERIFY_QUERY_SYSTEM), Message("user", parts)]
    reply = await ctx.client.structured(STAGE, messages, QueryVerdictReply,
                                        temperature=cfg.temperature, max_tokens=cfg.max_tokens)
    if not reply.correct:
        raise Rejected("query_file_rejected", reply.thought[:300])
    verdict = Verdict(correct=True, thought=reply.thought, raw=reply.model_dump(mode="json"))
    update: dict[str, Any] = {"query_verdict": verdict}
    if cfg.use_updated_query and reply.updated_query and reply.updated_query.strip():
        update["query"] = " ".join(reply.updated_query.split())
    return item.model_copy(update=update)


INPUT = "files"
STEP = Step(STAGE, verify)
