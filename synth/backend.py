"""The API model as a t3edge backend, for the agent that solves the tasks.

The agent runs on a worker thread; each model call goes through the run's SynthClient on the
event loop, so trajectory steps get the same retries, request cache, accounting and budget as
every other stage (a resumed run replays an interrupted trajectory from the cache).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence

from synth.client import SynthClient
from synth.errors import Rejected
from t3edge.backends.base import (
    Backend,
    Completion,
    GenerationConfig,
    Message,
    StopScanner,
    StreamItem,
    TextDelta,
    Usage,
)
from t3edge.errors import BackendError, T3Error


class ClientBackend(Backend):
    name = "openai"

    def __init__(self, client: SynthClient, loop: asyncio.AbstractEventLoop, stage: str) -> None:
        super().__init__(client.api.model, supports_images=True, image_policy=client.image_policy)
        self.client = client
        self.loop = loop
        self.stage = stage
        self.failure: Exception | None = None

    def stream(self, messages: Sequence[Message], config: GenerationConfig) -> Iterator[StreamItem]:
        call = self.client.complete(self.stage, messages, temperature=config.temperature,
                                    max_tokens=config.max_tokens, stop=config.stop, seed=config.seed)
        try:
            reply = asyncio.run_coroutine_threadsafe(call, self.loop).result()
        except (Rejected, T3Error) as exc:  # given up, refused, budget spent: the stage decides
            self.failure = exc
            raise BackendError(f"API call failed: {exc}") from exc
        scanner = StopScanner(config.stop)
        shown = scanner.feed(reply.text)
        shown += "" if scanner.hit else scanner.flush()
        if shown:
            yield TextDelta(shown)
        if scanner.hit:
            finish = "stop_string"
        else:
            finish = "length" if reply.finish_reason == "length" else "stop"
        usage = Usage(prompt_tokens=reply.prompt_tokens, generated_tokens=reply.completion_tokens)
        yield Completion(text=scanner.text, usage=usage, finish_reason=finish, stop_string=scanner.hit)
