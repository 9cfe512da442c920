"""GTA scoring: the official answer check (an exact port, quirks kept) and T3-Agent's lenient one.

Official check: each whitelist group must match `\\b(?:alias|alias...)\\b` (aliases regex-escaped,
case-insensitive); when a blacklist is given, no blacklist alias may match the same way. Because
`\\b` needs a word character on exactly one side, an alias that starts or ends with a non-word
character only matches beside a word character ("25%" matches in "25%off", not in "25% of it";
"$5" in "US$5", not in "costs $5"), while "5" matches inside "5.5".

T3-Agent's protocol: every whitelist group has an alias that is a case-insensitive substring of
the answer; the blacklist is ignored; only dict (objective) answers are scored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from t3edge.eval.gta import AnswerKey, GTAItem, GTAKind
from t3edge.eval.items import ToolCall
from t3edge.eval.similarity import Similarity

CATEGORIES: dict[str, tuple[str, ...]] = {
    "perception": ("OCR", "ImageDescription", "RegionAttributeDescription", "TextToBbox"),
    "operation": ("DrawBox", "AddText", "GoogleSearch"),
    "logic": ("Calculator", "Solver", "Plot", "MathOCR", "CountGivenObject"),
    "creativity": ("TextToImage", "ImageStylization"),
}
GTA_TOOLS: tuple[str, ...] = tuple(name for names in CATEGORIES.values() for name in names)
IMAGE_OUTPUT_TOOLS = ("DrawBox", "AddText", "Plot", "TextToImage", "ImageStylization")


def tool_category(name: str) -> str | None:
    for category, names in CATEGORIES.items():
        if name in names:
            return category
    return None


def _pattern(aliases: Iterable[str]) -> str:
    return r"\b(?:" + "|".join(re.escape(alias) for alias in aliases) + r")\b"


def _key(key: AnswerKey | Mapping[str, Any]) -> AnswerKey:
    return key if isinstance(key, AnswerKey) else AnswerKey.model_validate(key)


def official_correct(prediction: str, key: AnswerKey | Mapping[str, Any]) -> bool:
    """GTA's own answer check, exactly as released (`key` may be the raw `gt_answer` dict)."""
    key = _key(key)
    matched = sum(1 for group in key.whitelist if re.search(_pattern(group), prediction, re.IGNORECASE))
    if matched != len(key.whitelist):
        return False
    if not key.blacklist:
        return True
    banned = _pattern(alias for group in key.blacklist for alias in group)
    return re.search(banned, prediction, re.IGNORECASE) is None


def lenient_correct(prediction: str, key: AnswerKey | Mapping[str, Any]) -> bool:
    """T3-Agent's check: a substring of some alias in every whitelist group; no blacklist."""
    lowered = prediction.lower()
    return all(any(alias.lower() in lowered for alias in group) for group in _key(key).whitelist)


class GTAVerdict(BaseModel):
    """One item's scores. `None` means not scored: the reason is in `skipped`."""

    benchmark: Literal["gta"] = "gta"
    kind: GTAKind
    answered: bool
    official: float | None = None  # the text-answer score (objective 0/1, subjective similarity)
    lenient: bool | None = None  # T3-Agent protocol, objective items only
    image_score: float | None = None  # Ans+I contribution of an image query
    skipped: str | None = None
    tools_recorded: bool = False
    predicted_tools: list[str] = Field(default_factory=list)
    reference_tools: list[str] = Field(default_factory=list)

    @property
    def correct(self) -> bool:
        """A pass/fail view for comparisons (score of at least 0.5)."""
        score = self.official if self.kind != "image" else self.image_score
        return score is not None and score >= 0.5


def image_query_score(item: GTAItem, calls: Sequence[ToolCall] | None,
                      similarity: Similarity | None) -> tuple[float | None, str | None]:
    """GTA's Ans+I score of an image query: 1, times the argument similarity of each reference
    image-output call (0 when the prediction never made that call without error)."""
    if calls is None:
        return None, "no tool calls recorded (predictions only)"
    predicted: dict[str, dict] = {}
    for call in calls:
        if call.error is None and call.name in IMAGE_OUTPUT_TOOLS:
            predicted[call.name] = call.arguments
    refs = [ref for ref in item.reference_calls if ref.name in IMAGE_OUTPUT_TOOLS]
    if any(ref.name not in predicted for ref in refs):
        return 0.0, None
    if refs and similarity is None:
        return None, "no embedding model for tool-argument similarity"
    score = 1.0
    for ref in refs:
        assert similarity is not None
        score *= similarity.score(json.dumps(ref.arguments), json.dumps(predicted[ref.name]))
    return score, None


def score_gta(item: GTAItem, prediction: str | None, calls: Sequence[ToolCall] | None,
              similarity: Similarity | None, *, no_similarity_reason: str = "") -> GTAVerdict:
    """Score one GTA item from its final answer and (when run here) the tool calls it made."""
    answer = prediction or ""
    verdict = GTAVerdict(
        kind=item.kind, answered=bool(answer), tools_recorded=calls is not None,
        predicted_tools=[c.name for c in calls] if calls is not None else [],
        reference_tools=[c.name for c in item.reference_calls],
    )
    key = item.gt_answer
    if isinstance(key, AnswerKey):
        verdict.official = float(bool(answer) and official_correct(answer, key))
        verdict.lenient = bool(answer) and lenient_correct(answer, key)
    elif key:  # subjective: best similarity to a reference
        if not answer:
            verdict.official = 0.0
        elif similarity is None:
            verdict.skipped = no_similarity_reason or "no embedding model for subjective answers"
        else:
            verdict.official = similarity.best(answer, key)
    else:
        verdict.image_score, verdict.skipped = image_query_score(item, calls, similarity)
    return verdict
