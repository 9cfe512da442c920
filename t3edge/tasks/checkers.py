"""Answer checkers: numbers within a tolerance, normalized strings, sets and lists, image sizes.

Answers come as the agent's `final_answer(...)` value (a number, a string, a list) or as its
text; both are read. The checkers are lenient about form (case, spacing, quotes, a currency sign,
`160 x 120` vs `(160, 120)`) and strict about content.
"""

from __future__ import annotations

import ast
import math
import re
import unicodedata
from typing import Any

from t3edge.tasks.schema import CheckSpec, TaskRecord

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_SIZE = re.compile(r"^\D*?(\d+)\s*(?:x|×|,|\s|by)\s*(\d+)\D*$", re.I)
_EPS = 1e-9


def parse_number(answer: Any) -> float | None:
    """A number: the value itself, a one-element list of it, or a text holding exactly one
    number (`$1,234.50`, `The total is 23.75.`)."""
    if isinstance(answer, bool) or answer is None:
        return None
    if isinstance(answer, (int, float)):
        return float(answer) if math.isfinite(answer) else None
    if isinstance(answer, (list, tuple)) and len(answer) == 1:
        return parse_number(answer[0])
    if not isinstance(answer, str):
        return None
    text = answer.replace(",", "").replace("$", "").replace("€", "").replace("£", "")
    found = _NUMBER.findall(text)
    if len(found) != 1:
        return None
    try:
        value = float(found[0])
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def normalize_text(value: Any) -> str:
    """Unicode-normalized, case-folded, spaces collapsed, outer quotes and a final full stop removed."""
    text = unicodedata.normalize("NFKC", str(value)).casefold().strip()
    text = re.sub(r"\s+", " ", text)
    previous = None
    while previous != text:
        previous = text
        text = text.strip().strip("\"'`“”‘’").strip().rstrip(".")
    return text


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def as_items(answer: Any) -> list[str] | None:
    """The elements of a list answer, normalized: a list/tuple/set, its Python or JSON text, or
    a text with the elements separated by commas, semicolons or newlines."""
    if isinstance(answer, (list, tuple, set, frozenset)):
        items = list(answer)
    elif isinstance(answer, str):
        parsed = _literal(answer)
        if isinstance(parsed, (list, tuple, set)):
            items = list(parsed)
        else:
            text = answer.strip()
            if text[:1] in "[(" and text[-1:] in "])":
                text = text[1:-1]
            items = [p for p in re.split(r"[,;\n]|\band\b", text) if p.strip()]
    else:
        return None
    out = [normalize_text(i) for i in items]
    return out if all(out) else None


def parse_size(answer: Any) -> tuple[int, int] | None:
    """(width, height) from `[160, 120]`, `(160, 120)`, `160x120`, `160 x 120`, `160 by 120`."""
    if isinstance(answer, (list, tuple)) and len(answer) == 2:
        w, h = answer
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer() for v in (w, h)):
            return int(w), int(h)
        return None
    if isinstance(answer, dict):
        w, h = answer.get("width"), answer.get("height")
        return parse_size([w, h]) if w is not None and h is not None else None
    if not isinstance(answer, str):
        return None
    parsed = _literal(answer)
    if isinstance(parsed, (list, tuple)):
        return parse_size(parsed)
    m = _SIZE.match(answer.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def check_value(spec: CheckSpec, key: Any, answer: Any) -> bool:
    """Whether `answer` matches the answer key `key` under `spec`."""
    if answer is None:
        return False
    if spec.kind == "number":
        got, want = parse_number(answer), parse_number(key)
        return got is not None and want is not None and abs(got - want) <= spec.tolerance + _EPS
    if spec.kind == "text":
        if isinstance(answer, (list, tuple)) and len(answer) == 1:
            answer = answer[0]
        if isinstance(answer, (list, tuple, dict, set)):
            return False
        return normalize_text(answer) == normalize_text(key)
    if spec.kind in ("set", "list"):
        got, want = as_items(answer), as_items(key)
        if got is None or want is None:
            return False
        return sorted(got) == sorted(want) if spec.kind == "set" else got == want
    if spec.kind == "size":
        got = parse_size(answer)
        return got is not None and got == parse_size(key)
    return False


def check(record: TaskRecord, answer: Any) -> bool:
    """Whether `answer` (a final answer's value or its text) is right for the task."""
    return check_value(record.check, record.answer, answer)


def key_problem(record: TaskRecord) -> str | None:
    """Why a record's answer key cannot be checked (None when it is sound)."""
    kind, key = record.check.kind, record.answer
    if kind == "number" and (isinstance(key, (str, bool)) or parse_number(key) is None):
        return f"the answer {key!r} is not a number, but the check is numeric"
    if kind == "text" and (not isinstance(key, str) or not normalize_text(key)):
        return f"the answer {key!r} is not a non-empty string"
    if kind in ("set", "list") and (not isinstance(key, list) or not key or as_items(key) is None):
        return f"the answer {key!r} is not a non-empty list"
    if kind == "size" and parse_size(key) is None:
        return f"the answer {key!r} is not a size WIDTHxHEIGHT"
    if not check(record, key):
        return f"the answer {key!r} does not pass its own check"
    return None
