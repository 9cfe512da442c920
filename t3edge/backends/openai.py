"""A backend for any OpenAI-compatible chat API: a cloud model, llama_cpp.server, mlx_vlm.server.

Images go as PNG data URLs. Failures before the first token (429, 5xx, timeouts, dropped
connections) are retried with exponential backoff and jitter, honouring Retry-After; other API
errors become one clear BackendError.

A grammar (`GenerationConfig.grammar`) goes as the request's `grammar` field in GBNF, which
llama_cpp.server and llama.cpp's llama-server enforce. A server that refuses the request with it
(HTTP 400/422) is asked again without it, and from then on generates freely (the Completion says
which). A server that silently ignores unknown fields cannot be told apart: its steps are free.
"""

from __future__ import annotations

import base64
import io
import os
import random
import time
from collections.abc import Iterator, Sequence
from typing import Any

from PIL import Image

from t3edge.backends.base import (
    Backend, Completion, GenerationConfig, ImagePart, Message, StopScanner, StreamItem, TextDelta,
    Usage,
)
from t3edge.errors import BackendError
from t3edge.backends.settings import BackendSettings, ModelFiles
from t3edge.step_grammar import GBNF_GRAMMARS

RETRY_BASE_S = 0.5
RETRY_CAP_S = 20.0


def data_url(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def backoff_delay(attempt: int, retry_after: float | None = None) -> float:
    """Seconds to wait before retry `attempt` (0-based): exponential, capped, with full jitter."""
    if retry_after is not None and retry_after >= 0:
        return min(retry_after, RETRY_CAP_S)
    return random.uniform(0.5, 1.5) * min(RETRY_CAP_S, RETRY_BASE_S * 2**attempt)


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, resolved: ModelFiles, settings: BackendSettings) -> None:
        from openai import OpenAI

        assert resolved.url is not None
        super().__init__(resolved.spec, context_length=settings.context_length, supports_images=True)
        self.settings = settings
        self.url = resolved.url
        key = os.environ.get(settings.openai_api_key_env) or "not-needed"
        self.client = OpenAI(base_url=resolved.url, api_key=key, timeout=settings.timeout_s, max_retries=0)
        self._model = resolved.remote_model
        self._urls: dict[int, tuple[Image.Image, str]] = {}
        self.retries = 0
        self.grammar_accepted: bool | None = None  # None until a request with a grammar was answered

    def can_constrain(self) -> bool:
        return self.grammar_accepted is not False

    @property
    def remote_model(self) -> str:
        """The server's model name: the one given, else the first the server lists."""
        if self._model is None:
            listed = self._call(lambda: self.client.models.list())
            names = [m.id for m in listed.data]
            self._model = names[0] if names else "default"
        return self._model

    def _url(self, img: Image.Image) -> str:
        hit = self._urls.get(id(img))
        if hit is None or hit[0] is not img:
            hit = (img, data_url(img))
            self._urls[id(img)] = hit
        return hit[1]

    def payload(self, messages: Sequence[Message]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for msg in messages:
            if not msg.images:
                out.append({"role": msg.role, "content": msg.text})
                continue
            parts: list[dict[str, Any]] = []
            for part in msg.parts:
                if isinstance(part, ImagePart):
                    parts.append({"type": "image_url", "image_url": {"url": self._url(self._prepare(part))}})
                else:
                    parts.append({"type": "text", "text": part.text})
            out.append({"role": msg.role, "content": parts})
        return out

    def _call(self, fn: Any) -> Any:
        """Call the API, retrying transient failures; anything else is a BackendError."""
        import openai

        attempt = 0
        while True:
            try:
                return fn()
            except (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError,
                    openai.APIConnectionError) as exc:
                if attempt >= self.settings.max_retries:
                    raise BackendError(
                        f"{self.url}: {_describe(exc)} after {attempt + 1} attempts",
                        hint="check that the server is up, or raise backend.max_retries / timeout_s",
                    ) from exc
                time.sleep(backoff_delay(attempt, _retry_after(exc)))
                attempt += 1
                self.retries += 1
            except openai.APIStatusError as exc:
                raise BackendError(f"{self.url}: {_describe(exc)}") from exc

    def stream(self, messages: Sequence[Message], config: GenerationConfig) -> Iterator[StreamItem]:
        body = self.payload(messages)
        request: dict[str, Any] = {
            "model": self.remote_model, "messages": body, "max_tokens": config.max_tokens,
            "temperature": config.temperature, "top_p": config.top_p, "stream": True,
            "stream_options": {"include_usage": True},
        }
        if config.stop:
            request["stop"] = config.stop[:4]
        if config.seed is not None:
            request["seed"] = config.seed
        grammar = config.grammar if self.grammar_accepted is not False else None
        start = time.perf_counter()
        chunks, grammar = self._open(request, grammar)
        scanner = StopScanner(config.stop)
        usage = Usage()
        finish = "stop"
        finished = False  # a chunk gave a finish reason: the server ended the reply itself
        first: float | None = None
        pieces = 0
        try:
            for chunk in chunks:
                if chunk.usage is not None:
                    usage.prompt_tokens = chunk.usage.prompt_tokens or 0
                    usage.generated_tokens = chunk.usage.completion_tokens or 0
                    details = getattr(chunk.usage, "prompt_tokens_details", None)
                    usage.cached_tokens = int(getattr(details, "cached_tokens", 0) or 0)
                for choice in chunk.choices:
                    finished = finished or choice.finish_reason is not None
                    if choice.finish_reason == "length":
                        finish = "length"
                    text = choice.delta.content if choice.delta else None
                    if not text:
                        continue
                    first = first or time.perf_counter()
                    pieces += 1
                    shown = scanner.feed(text)
                    if shown:
                        yield TextDelta(shown)
                    if scanner.hit:
                        break
                if scanner.hit:
                    finish = "stop_string"
                    break
        except Exception as exc:  # a broken stream (connection dropped, bad chunk, an error event)
            detail = getattr(exc, "message", None) or str(exc)
            raise BackendError(f"{self.url}: the stream broke off: {_describe(exc)}"
                               + (f": {detail[:300]}" if detail else "")) from exc
        finally:
            chunks.close()
        if scanner.hit is None and not finished:
            raise BackendError(
                f"{self.url}: the reply stopped without a finish reason (cut short by the server)",
                hint="a server may cut a stream when another request arrives (llama_cpp.server does "
                     "unless started with --interrupt_requests False, as python -m "
                     "t3edge.backends.llama_server is), or at a time limit of its own; send one "
                     "request at a time (t3edge eval --jobs 1) or fix the server's setting")
        if scanner.hit is None:
            tail = scanner.flush()
            if tail:
                yield TextDelta(tail)
        end = time.perf_counter()
        usage.generated_tokens = usage.generated_tokens or pieces
        usage.prompt_seconds = (first or end) - start
        usage.generation_seconds = end - (first or end)
        yield Completion(text=scanner.text, usage=usage, finish_reason=finish, stop_string=scanner.hit,
                         grammar=grammar)

    def _open(self, request: dict[str, Any], grammar: str | None) -> tuple[Any, str | None]:
        """Start the streamed request, with `grammar` if given; a server that refuses the grammar
        is asked again without it. Returns the stream and the grammar in force."""
        import openai

        create = self.client.chat.completions.create
        if grammar is None:
            return self._call(lambda: create(**request)), None
        try:
            chunks = self._call(lambda: create(**request, extra_body={"grammar": GBNF_GRAMMARS[grammar]}))
        except BackendError as exc:
            refused = isinstance(exc.__cause__, openai.APIStatusError) and exc.__cause__.status_code in (400, 422)
            if not refused:
                raise
            chunks = self._call(lambda: create(**request))  # this one failing too: not the grammar's fault
            self.grammar_accepted = False
            return chunks, None
        self.grammar_accepted = True
        return chunks, grammar


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    return f"HTTP {status} ({name})" if status else name


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
