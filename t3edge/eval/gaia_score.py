"""GAIA's official question scorer, ported rule for rule (docs/eval.md).

- The truth parses as a float: strip `$`, `%` and `,` from the answer and compare floats exactly
  (an unparseable answer becomes +inf, so it is wrong unless the truth is `inf`).
- Else the truth contains `,` or `;`: split both on `[,;]`, require equal length, compare in order
  (numeric elements as above; others lower-cased with all whitespace removed, punctuation kept).
- Else: lower-case, remove whitespace and punctuation, compare.
A missing answer is scored as the string "None".
"""

from __future__ import annotations

import re
import string
from typing import Literal

from pydantic import BaseModel

from t3edge.eval.gaia import GAIAItem

_PUNCTUATION = str.maketrans("", "", string.punctuation)
_SEPARATORS = re.compile(r"[,;]")


def _parses_as_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def number_value(text: str) -> float:
    """The answer as a number after removing `$ % ,`; +inf when it does not parse."""
    for char in "$%,":
        text = text.replace(char, "")
    try:
        return float(text)
    except ValueError:
        return float("inf")


def normalize_text(text: str, *, remove_punctuation: bool = True) -> str:
    """Lower-case with every whitespace character removed (and punctuation, by default)."""
    squeezed = re.sub(r"\s", "", text).lower()
    return squeezed.translate(_PUNCTUATION) if remove_punctuation else squeezed


def answer_kind(truth: str) -> str:
    """Which rule scores answers to `truth`: "number", "list" or "string"."""
    if _parses_as_float(truth):
        return "number"
    if "," in truth or ";" in truth:
        return "list"
    return "string"


def question_scorer(model_answer: str | None, ground_truth: str) -> bool:
    """True when `model_answer` counts as correct for `ground_truth` under GAIA's rules."""
    answer = "None" if model_answer is None else model_answer
    kind = answer_kind(ground_truth)
    if kind == "number":
        return number_value(answer) == float(ground_truth)
    if kind == "list":
        truths = _SEPARATORS.split(ground_truth)
        answers = _SEPARATORS.split(answer)
        if len(truths) != len(answers):
            return False
        for got, want in zip(answers, truths):
            if _parses_as_float(want):
                if number_value(got) != float(want):
                    return False
            elif normalize_text(got, remove_punctuation=False) != normalize_text(want, remove_punctuation=False):
                return False
        return True
    return normalize_text(answer) == normalize_text(ground_truth)


class GAIAVerdict(BaseModel):
    """One GAIA item: `correct` is None when the split hides its answer (test)."""

    benchmark: Literal["gaia"] = "gaia"
    level: int
    answered: bool
    correct: bool | None = None


def score_gaia(item: GAIAItem, prediction: str | None) -> GAIAVerdict:
    """Score as the leaderboard scores our submission file, where no answer is written as ""."""
    return GAIAVerdict(
        level=item.level, answered=bool(prediction),
        correct=question_scorer(prediction or "", item.final_answer or "") if item.has_answer else None,
    )
