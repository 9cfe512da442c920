"""The synthesis client over real HTTP (scripted server): retries, backoff, cache, budget, JSON repair."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from pydantic import BaseModel

from synth.client import RequestCache, SynthClient
from synth.config import ApiSettings, Prices
from synth.errors import ApiFailed, BudgetExhausted, Rejected
from synth.ledger import Ledger
from synth.structured import parse_json_object, parse_reply
from t3edge.backends.base import Message
from t3edge.errors import T3Error
from t3edge.scripted_server import Fault, ScriptedOpenAIServer, sequence


class Answer(BaseModel):
    a: int
    ok: bool = True


def _client(url: str, folder: Path, *, budget: float | None = None, sleeps: list[float] | None = None,
            **api: object) -> SynthClient:
    settings = ApiSettings(base_url=url, model="m", timeout_s=0.5, max_retries=3,
                           backoff_base_s=0.01, backoff_max_s=0.04, **api)

    async def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    return SynthClient(settings, Prices(input_per_mtok=1000.0, output_per_mtok=1000.0),
                       Ledger(folder / "usage.jsonl"), RequestCache(folder / "cache"),
                       budget_usd=budget, sleep=sleep, rng=random.Random(0))


def _ask(client: SynthClient, text: str = "hi") -> Answer:
    async def go() -> Answer:
        try:
            return await client.structured("stage", [Message("user", text)], Answer,
                                           temperature=0.0, max_tokens=16)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_retries_every_transient_fault_then_answers(tmp_path: Path) -> None:
    replies = sequence(Fault(status=429), Fault(status=503), Fault(hang_s=1.0), '{"a": 1}')
    sleeps: list[float] = []
    with ScriptedOpenAIServer(replies) as server:
        client = _client(server.url, tmp_path, sleeps=sleeps)
        assert _ask(client).a == 1
        assert len(server.requests) == 4
    usage = client.ledger.stages["stage"]
    assert usage.retries == {"http_429": 1, "http_503": 1, "timeout": 1}
    assert usage.requests == 1 and usage.cost_usd > 0
    # exponential with jitter: each wait within [ceiling/2, ceiling], ceiling doubling up to the cap
    for attempt, wait in enumerate(sleeps):
        ceiling = min(0.04, 0.01 * 2 ** attempt)
        assert ceiling / 2 <= wait <= ceiling


def test_gives_up_after_max_retries_and_never_retries_a_refusal(tmp_path: Path) -> None:
    with ScriptedOpenAIServer(sequence(Fault(status=500))) as server:
        with pytest.raises(ApiFailed, match="http_500 after 3 retries"):
            _ask(_client(server.url, tmp_path / "a"))
        assert len(server.requests) == 4
    with ScriptedOpenAIServer(sequence(Fault(status=400))) as server:
        with pytest.raises(Rejected) as info:
            _ask(_client(server.url, tmp_path / "b"))
        assert info.value.reason == "api_refused" and not isinstance(info.value, ApiFailed)
        assert len(server.requests) == 1
    with ScriptedOpenAIServer(sequence(Fault(status=401))) as server:
        with pytest.raises(T3Error, match="synth.api.base_url"):
            _ask(_client(server.url, tmp_path / "c"))
        assert len(server.requests) == 1


def test_an_unreachable_server_stops_with_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(T3Error, match="cannot reach the API"):
        _ask(_client(f"http://127.0.0.1:{port}/v1", tmp_path))
    assert Ledger(tmp_path / "usage.jsonl").stages["stage"].retries == {"connection": 3}


def test_malformed_body_is_retried_and_malformed_content_rejected(tmp_path: Path) -> None:
    with ScriptedOpenAIServer(sequence(Fault(body="{oops"), "no json here at all")) as server:
        with pytest.raises(Rejected) as info:
            _ask(_client(server.url, tmp_path))
        assert info.value.reason == "malformed_json"
        assert len(server.requests) == 2


def test_identical_request_is_answered_from_disk(tmp_path: Path) -> None:
    with ScriptedOpenAIServer(sequence('{"a": 7}', '{"a": 8}')) as server:
        assert _ask(_client(server.url, tmp_path)).a == 7
        assert _ask(_client(server.url, tmp_path)).a == 7  # a new client: same cache, same ledger
        assert _ask(_client(server.url, tmp_path), "other").a == 8
        assert len(server.requests) == 2
    ledger = Ledger(tmp_path / "usage.jsonl")
    assert ledger.stages["stage"].cache_hits == 1 and ledger.stages["stage"].requests == 3


def test_budget_stops_new_requests_and_counts_earlier_runs(tmp_path: Path) -> None:
    with ScriptedOpenAIServer(sequence('{"a": 1}')) as server:
        assert _ask(_client(server.url, tmp_path, budget=0.001), "one").a == 1
        spent = Ledger(tmp_path / "usage.jsonl").spent
        assert spent > 0.001
        with pytest.raises(BudgetExhausted):
            _ask(_client(server.url, tmp_path, budget=0.001), "two")
        assert _ask(_client(server.url, tmp_path, budget=0.001), "one").a == 1  # cached: free
        assert len(server.requests) == 1


def test_structured_request_asks_for_json_mode(tmp_path: Path) -> None:
    with ScriptedOpenAIServer(sequence('{"a": 1}')) as server:
        _ask(_client(server.url, tmp_path / "a"))
        _ask(_client(server.url, tmp_path / "b", response_format="json_schema"))
        _ask(_client(server.url, tmp_path / "c", response_format="none"))
        formats = [r.get("response_format") for r in server.requests]
    assert formats[0] == {"type": "json_object"}
    assert formats[1]["json_schema"]["schema"]["required"] == ["a"]
    assert formats[2] is None


@pytest.mark.parametrize("text, repairs", [
    ('{"a": 1}', []),
    ('Here it is:\n```json\n{"a": 2, "ok": false}\n```\nDone.', []),
    ('{"a": 3, "ok": true,}', ["trailing_comma"]),
    ("{'a': 4}".replace("'", '"').replace("}", ", \"ok\": True}"), ["python_literals"]),
    ('{"a": 5, "note": "cut off', ["truncated"]),
])
def test_json_repairs(text: str, repairs: list[str]) -> None:
    value, done = parse_json_object(text)
    assert isinstance(value["a"], int)
    assert done == repairs


def test_unrepairable_and_wrong_shape_are_rejected_with_reasons() -> None:
    with pytest.raises(Rejected) as info:
        parse_json_object("I cannot answer that.")
    assert info.value.reason == "malformed_json"
    with pytest.raises(Rejected) as info:
        parse_reply('{"a": "many"}', Answer)
    assert info.value.reason == "schema_mismatch" and info.value.detail.startswith("a:")
