"""The scorers: GTA's official check (quirks kept), T3-Agent's lenient one, GAIA's scorer."""

from __future__ import annotations

import pytest

from t3edge.eval.gaia_score import answer_kind, number_value, question_scorer
from t3edge.eval.gta import AnswerKey
from t3edge.eval.gta_score import lenient_correct, official_correct, tool_category


def key(white, black=None) -> AnswerKey:
    return AnswerKey(whitelist=white, blacklist=black)


@pytest.mark.parametrize(("prediction", "white", "black", "expected"), [
    ("There are 4 apples.", [["4", "four"]], None, True),
    ("There are FOUR apples.", [["4", "four"]], None, True),  # case-insensitive
    ("There are 14 apples.", [["4"]], None, False),  # word boundary: 4 inside 14 is no match
    ("fourteen", [["four"]], None, False),
    ("It costs 5.5 dollars", [["5"]], None, True),  # quirk: "5" matches inside "5.5"
    ("It is 25% of it", [["25%"]], None, False),  # quirk: "%" then a space is no word boundary, so no match
    ("25%", [["25%"]], None, False),
    ("It costs $5", [["$5"]], None, False),  # quirk: a space then "$" is no word boundary, so no match
    ("red and blue", [["red"], ["blue"]], None, True),  # every group must match
    ("red only", [["red"], ["blue"]], None, False),
    ("The car is red", [["red"]], [["dark red"]], True),
    ("The car is dark red", [["red"]], [["dark red"]], False),  # a blacklist alias rejects
    ("The car is red, not maroon", [["red"]], [["dark red"], ["maroon"]], False),
    ("The car is red", [["red"]], [], True),  # empty blacklist = none
    ("a.b matched", [["a.b"]], None, True),  # aliases are regex-escaped
    ("axb", [["a.b"]], None, False),
    ("New York City", [["new york"]], None, True),
    ("", [["4"]], None, False),
])
def test_gta_official_check(prediction: str, white, black, expected: bool) -> None:
    assert official_correct(prediction, key(white, black)) is expected


@pytest.mark.parametrize(("prediction", "white", "black", "expected"), [
    ("It is 25% of it", [["25%"]], None, True),  # substring: the quirk is gone
    ("It costs $5", [["$5"]], None, True),
    ("There are 14 apples.", [["4"]], None, True),  # substring: "4" in "14" counts
    ("The car is dark red", [["red"]], [["dark red"]], True),  # blacklist ignored
    ("RED and Blue", [["red"], ["blue"]], None, True),
    ("red only", [["red"], ["blue"]], None, False),
])
def test_t3agent_lenient_check(prediction: str, white, black, expected: bool) -> None:
    assert lenient_correct(prediction, key(white, black)) is expected


def test_numbers_in_aliases_are_read_as_text() -> None:
    assert key([[4, "four"]]).whitelist == [["4", "four"]]


def test_tool_categories() -> None:
    assert tool_category("OCR") == "perception"
    assert tool_category("GoogleSearch") == "operation"
    assert tool_category("Plot") == "logic"
    assert tool_category("ImageStylization") == "creativity"
    assert tool_category("visualizer") is None


@pytest.mark.parametrize(("answer", "truth", "expected"), [
    ("24", "24", True),
    ("24.0", "24", True),
    ("$1,000", "1000", True),  # $ and , stripped for numbers
    ("50%", "50", True),
    ("about 24", "24", False),  # unparseable -> inf -> wrong
    ("24 legs", "24", False),
    ("0.1", "0.10", True),
    ("3", "3.5", False),
    ("red, green, blue", "red, green, blue", True),
    ("Red;Green;Blue", "red, green, blue", True),  # either separator, case and spaces ignored
    ("red, blue, green", "red, green, blue", False),  # order matters
    ("red, green", "red, green, blue", False),  # lengths must match
    ("red, green, blue.", "red, green, blue", False),  # list elements keep punctuation
    ("1, 2,000", "1, 2", False),  # "2,000" splits into two elements
    ("$1; 2", "1; 2", True),  # numeric elements normalized
    ("Sea gull", "seagull", True),  # whitespace removed
    ("Sea-gull!", "Sea gull", True),  # punctuation removed for plain strings
    ("seagulls", "Sea gull", False),
    (None, "None", True),  # a missing answer is the string "None"
    (None, "24", False),
    ("", "", True),
])
def test_gaia_scorer(answer, truth: str, expected: bool) -> None:
    assert question_scorer(answer, truth) is expected


def test_gaia_rule_choice_and_number_value() -> None:
    assert answer_kind("1e3") == "number"
    assert answer_kind("a; b") == "list"
    assert answer_kind("Paris") == "string"
    assert number_value("$1,234.5%") == 1234.5
    assert number_value("n/a") == float("inf")
