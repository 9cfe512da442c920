"""Which saved chat a client's conversation continues.

A plain OpenAI client sends the whole conversation each time: earlier user turns, the answers it
was given, and the new question last. The chat it continues is the one whose runs asked the same
questions, in order, and whose answers appear in the assistant turns (a streamed reply shows the
steps before the answer, a plain one only the answer). A client may also name the chat
(`t3edge_chat`, the id every response carries).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from t3edge.chats import ChatStore
from t3edge.conversation import chat_chain
from t3edge.errors import T3Error
from t3edge.serve.requests import ChatMessage, RequestError
from t3edge.trajectory import Trajectory

RECENT_CHATS = 200  # how many of the most recent chats are compared with a conversation


def answer_text(answer: Any) -> str:
    """A final answer as the text of the assistant's reply."""
    return answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False, default=str)


def earlier_turns(messages: Sequence[ChatMessage]) -> list[tuple[str, str]]:
    """(question, reply) for each exchange before the last message (system turns are skipped)."""
    turns = [m for m in messages[:-1] if m.role in ("user", "assistant")]
    pairs: list[tuple[str, str]] = []
    for i in range(0, len(turns) - 1, 2):
        if turns[i].role == "user" and turns[i + 1].role == "assistant":
            pairs.append((turns[i].text, turns[i + 1].text))
    if len(pairs) * 2 != len(turns):
        raise RequestError(400, "earlier messages must alternate user and assistant turns")
    return pairs


def _matches(chain: Sequence[Trajectory], turns: Sequence[tuple[str, str]]) -> bool:
    return len(chain) == len(turns) and all(
        run.task.query.strip() == question.strip()
        and (run.final_answer is None or answer_text(run.final_answer) in reply)
        for run, (question, reply) in zip(chain, turns))


def find_chat(store: ChatStore, turns: Sequence[tuple[str, str]]) -> str | None:
    """The most recent chat (of the last RECENT_CHATS) whose runs are `turns`, or None."""
    if not turns:
        return None
    for info in store.list()[:RECENT_CHATS]:
        if info.runs != len(turns):
            continue
        try:
            chain = chat_chain(store.runs(info.id))
        except T3Error:  # a chat whose runs no longer form one chain cannot be continued
            continue
        if _matches(chain, turns):
            return info.id
    return None
