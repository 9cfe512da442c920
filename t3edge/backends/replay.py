"""A backend that replays scripted model outputs, one per call: `--model replay:FILE`.

FILE is JSONL (each line a JSON string, or an object with "output") or plain text with outputs
separated by lines holding only `---`. It tests the agent loop's logic, reproduces a reported
trajectory, and demos the app without a model. Stop strings apply as for a real model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from t3edge.backends.base import (
    Backend, Completion, GenerationConfig, Message, StopScanner, StreamItem, TextDelta, Usage,
)
from t3edge.errors import BackendError, T3Error
from t3edge.backends.settings import ModelFiles

SEPARATOR = "---"


def read_script(path: str | Path) -> list[str]:
    """The outputs of a replay file, in order."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    if p.suffix == ".jsonl":
        outputs: list[str] = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError as exc:
                raise T3Error(f"{p}:{lineno}: not JSON ({exc})", hint="one JSON string or object per line") from exc
            if isinstance(item, dict):
                item = item.get("output", item.get("text"))
            if not isinstance(item, str):
                raise T3Error(f"{p}:{lineno}: expected a string or an object with \"output\"")
            outputs.append(item)
        return outputs
    chunks, current = [], []
    for line in text.splitlines(keepends=True):
        if line.strip() == SEPARATOR:
            chunks.append("".join(current).strip("\n"))
            current = []
        else:
            current.append(line)
    chunks.append("".join(current).strip("\n"))
    return [c for c in chunks if c.strip()]


def _words(messages: Sequence[Message]) -> list[int]:
    return [len(m.text.split()) + 4 * len(m.images) + 3 for m in messages]


class ReplayBackend(Backend):
    """Answers call i with scripted output i, streamed word by word."""

    name = "replay"

    def __init__(self, source: ModelFiles | Sequence[str], *, delay_s: float = 0.0) -> None:
        if isinstance(source, ModelFiles):
            assert source.path is not None
            outputs, model_id = read_script(source.path), source.spec
        else:
            outputs, model_id = list(source), "replay:scripted"
        super().__init__(model_id, context_length=None, supports_images=True)
        self.outputs = outputs
        self.calls = 0
        self.delay_s = delay_s
        self.seen: list[list[Message]] = []
        self._last: list[Message] = []

    def stream(self, messages: Sequence[Message], config: GenerationConfig) -> Iterator[StreamItem]:
        if self.calls >= len(self.outputs):
            raise BackendError(f"replay script exhausted after {len(self.outputs)} outputs")
        self.prepared_images(messages)  # same image checks as a real backend
        output = self.outputs[self.calls]
        self.calls += 1
        self.seen.append(list(messages))
        sizes = _words(messages)
        shared = 0
        for old, new in zip(self._last, messages):
            if old != new:
                break
            shared += 1
        self._last = list(messages)
        usage = Usage(prompt_tokens=sum(sizes), cached_tokens=sum(sizes[:shared]))
        scanner = StopScanner(config.stop)
        start = time.perf_counter()
        produced = 0
        finish = "stop"
        pieces = output.split(" ")
        for i, piece in enumerate(pieces):
            if produced >= config.max_tokens:
                finish = "length"
                break
            if self.delay_s:
                time.sleep(self.delay_s)
            produced += 1
            shown = scanner.feed(piece if i == 0 else " " + piece)
            if shown:
                yield TextDelta(shown)
            if scanner.hit:
                finish = "stop_string"
                break
        if not scanner.hit:
            tail = scanner.flush()
            if tail:
                yield TextDelta(tail)
        usage.generated_tokens = produced
        usage.generation_seconds = time.perf_counter() - start
        yield Completion(text=scanner.text, usage=usage, finish_reason=finish, stop_string=scanner.hit)
