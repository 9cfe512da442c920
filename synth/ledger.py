"""Tokens, cost, retries and repairs per stage, kept in RUN/usage.jsonl so that totals (and the
budget) carry over when a run is resumed."""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel, Field

from t3edge.jsonl import JsonlWriter, iter_jsonl


class StageUsage(BaseModel):
    requests: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    retries: dict[str, int] = Field(default_factory=dict)
    failures: dict[str, int] = Field(default_factory=dict)
    repairs: dict[str, int] = Field(default_factory=dict)


class Ledger:
    """Appends one line per event and keeps running totals per stage."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stages: dict[str, StageUsage] = {}
        if path.is_file():
            for event in iter_jsonl(path):
                self._apply(event)
        self._writer = JsonlWriter(path)

    @property
    def spent(self) -> float:
        return sum(s.cost_usd for s in self.stages.values())

    def _stage(self, name: str) -> StageUsage:
        return self.stages.setdefault(name, StageUsage())

    def _apply(self, event: dict) -> None:
        usage = self._stage(event["stage"])
        kind = event["event"]
        if kind == "call":
            usage.requests += 1
            usage.cache_hits += int(event["cached"])
            usage.prompt_tokens += event["prompt_tokens"]
            usage.completion_tokens += event["completion_tokens"]
            usage.cost_usd += event["cost_usd"]
        else:
            bucket = {"retry": usage.retries, "failure": usage.failures, "repair": usage.repairs}[kind]
            bucket[event["reason"]] = bucket.get(event["reason"], 0) + 1

    def _log(self, event: dict) -> None:
        event["t"] = round(time.time(), 3)
        self._apply(event)
        self._writer.write(event)

    def call(self, stage: str, prompt_tokens: int, completion_tokens: int, cost_usd: float, *,
             cached: bool) -> None:
        self._log({"stage": stage, "event": "call", "cached": cached, "prompt_tokens": prompt_tokens,
                   "completion_tokens": completion_tokens, "cost_usd": cost_usd})

    def retry(self, stage: str, reason: str) -> None:
        self._log({"stage": stage, "event": "retry", "reason": reason})

    def failure(self, stage: str, reason: str) -> None:
        self._log({"stage": stage, "event": "failure", "reason": reason})

    def repaired(self, stage: str, repairs: list[str]) -> None:
        for repair in repairs:
            self._log({"stage": stage, "event": "repair", "reason": repair})

    def close(self) -> None:
        self._writer.close()
