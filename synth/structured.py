"""Structured replies: find the JSON object in a model's text, repair common breakage, validate.

Models wrap JSON in code fences or prose, leave trailing commas, write Python literals, or stop
mid-object at the token limit. What can be repaired is; what cannot is rejected with a reason
(`malformed_json` or `schema_mismatch`) that the run counts.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from synth.errors import Rejected

M = TypeVar("M", bound=BaseModel)

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)(?:```|\Z)", re.S)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_PY_LITERALS = {"True": "true", "False": "false", "None": "null"}


def _candidates(text: str) -> list[str]:
    """The fenced block (if any), then the span from the first `{` to the last `}` (or the end)."""
    out: list[str] = []
    fenced = _FENCE.search(text)
    if fenced:
        out.append(fenced.group(1).strip())
    start = text.find("{")
    if start != -1:
        end = text.rfind("}")
        out.append(text[start:end + 1] if end > start else text[start:])
    return out


def _replace_outside_strings(text: str, fix: dict[str, str]) -> str:
    pattern = re.compile(r'"(?:[^"\\]|\\.)*"|\b(' + "|".join(fix) + r")\b", re.S)
    return pattern.sub(lambda m: fix[m.group(1)] if m.group(1) else m.group(0), text)


def _close_truncated(text: str) -> str:
    """Close an unterminated string and any open brackets (a reply cut off at the token limit)."""
    stack: list[str] = []
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
    tail = '"' if in_string else ""
    body = (text + tail).rstrip()
    body = body[:-1] if body.endswith((",", ":")) else body
    return body + "".join(reversed(stack))


_REPAIRS = (
    ("trailing_comma", lambda s: _TRAILING_COMMA.sub(r"\1", s)),
    ("python_literals", lambda s: _replace_outside_strings(s, _PY_LITERALS)),
    ("truncated", _close_truncated),
)


def parse_json_object(text: str) -> tuple[dict[str, Any], list[str]]:
    """The JSON object in `text` and the repairs it needed; Rejected(`malformed_json`) if none."""
    for candidate in _candidates(text):
        repairs: list[str] = []
        current = candidate
        for name, fix in (("none", lambda s: s), *_REPAIRS):
            fixed = fix(current)
            if fixed != current:
                repairs.append(name)
                current = fixed
            try:
                value = json.loads(current)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value, repairs
            break
    preview = text.strip().replace("\n", " ")[:160]
    raise Rejected("malformed_json", f"no JSON object could be read from: {preview!r}")


def parse_reply(text: str, model: type[M]) -> tuple[M, list[str]]:
    """Validate a reply against `model`; Rejected(`malformed_json` | `schema_mismatch`) otherwise."""
    data, repairs = parse_json_object(text)
    try:
        return model.model_validate(data), repairs
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise Rejected("schema_mismatch", f"{where}: {first['msg']}") from exc
