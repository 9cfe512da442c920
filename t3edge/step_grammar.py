"""The step format as a grammar, for constrained decoding (docs/agent.md, "Constrained steps").

    Thought: <free text on one line, no backtick>
    Code:
    ```py
    <code: any text without three backticks in a row>
    ```<end_action>

The labels, the fence and `<end_action>` are forced; the thought and the code stay free text (no
Python grammar), so the model is not pushed into JSON or any other structure it was not taught.
The thought is one line with no backtick: the first line break a model writes opens the code
(`Code:` and the fence follow by force), so a `Code:` label can never be followed by anything but
a fence, and a model cannot start its code outside one. It is bounded (`MAX_THOUGHT_CHARS`, about
150 tokens) so that a model that would ramble on reaches its code within a step's token budget.
The code has at least one visible character and no triple backtick, so the first fence after it
closes it.

One definition, two spellings: `STEP_REGEX` (llguidance, used by the in-process llama.cpp and
MLX backends) and `STEP_GBNF` (llama.cpp's grammar format, sent to servers that accept one, such
as llama_cpp.server). Both describe the same language; the tests check that they agree.
"""

from __future__ import annotations

import re

from t3edge.protocol import END_ACTION

THOUGHT_LABEL = "Thought: "
CODE_HEAD = "\nCode:\n```py\n"
CODE_TAIL = "\n```" + END_ACTION
MAX_THOUGHT_CHARS = 600

_SPACE = " \\t\\n"  # the whitespace class, spelled the same way in both grammars


def _regex_literal(text: str) -> str:
    return re.sub(r"([\\.^$|?*+()\[\]{}])", r"\\\1", text).replace("\n", "\\n")


def _gbnf_literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


STEP_REGEX = (
    _regex_literal(THOUGHT_LABEL)
    + f"[^`\\n]{{0,{MAX_THOUGHT_CHARS}}}"
    + _regex_literal(CODE_HEAD)
    + f"[{_SPACE}]*[^`{_SPACE}](?:[^`]|`[^`]|``[^`])*"
    + _regex_literal(CODE_TAIL)
)

STEP_GBNF = "\n".join([
    f"root ::= {_gbnf_literal(THOUGHT_LABEL)} thought {_gbnf_literal(CODE_HEAD)} code "
    f"{_gbnf_literal(CODE_TAIL)}",
    f"thought ::= [^`\\n]{{0,{MAX_THOUGHT_CHARS}}}",
    f'code ::= [{_SPACE}]* [^`{_SPACE}] ([^`] | "`" [^`] | "``" [^`])*',
    "",
])

GRAMMARS = {"step": STEP_REGEX}  # the named grammars a GenerationConfig may ask for (llguidance regex)
GBNF_GRAMMARS = {"step": STEP_GBNF}  # the same, for servers that take a GBNF grammar


def is_step(text: str) -> bool:
    """Whether `text` is exactly one step in the constrained format."""
    return re.fullmatch(STEP_REGEX, text) is not None
