"""Checks every in-process backend must pass."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from t3edge.backends.base import Backend, GenerationConfig, Message


def threads_get_what_each_call_gets_alone(backend: Backend, conversations: Sequence[list[Message]],
                                          config: GenerationConfig, rounds: int = 2) -> None:
    """Calls from several threads at once (as items of an evaluation make them) take turns with
    the one model, and each gets exactly the tokens its conversation gets alone."""
    alone = []
    for convo in conversations:
        backend.reset()
        alone.append(backend.generate(convo, config).token_ids)
    calls = [(k, i) for k in range(rounds) for i in range(len(conversations))]
    start = threading.Barrier(len(calls))
    got: dict[tuple[int, int], list[int]] = {}
    errors: list[BaseException] = []

    def call(k: int, i: int) -> None:
        start.wait()
        try:
            got[(k, i)] = backend.generate(conversations[i], config).token_ids
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=call, args=c) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert {c: got.get(c) for c in calls} == {(k, i): alone[i] for k, i in calls}
