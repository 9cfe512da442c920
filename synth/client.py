"""The async client of the OpenAI-compatible API that every stage talks to.

Bounded concurrency; retries with exponential backoff and jitter on 429, 5xx, timeouts and
broken responses (each counted); an on-disk cache keyed by the exact request, so re-running costs
nothing; structured replies validated by pydantic; tokens and cost per stage in a ledger; and a
budget cap past which no new request is sent.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import openai
from PIL import Image
from pydantic import BaseModel

from synth.config import ApiSettings, Prices
from synth.errors import ApiFailed, BudgetExhausted, Rejected
from synth.ledger import Ledger
from synth.structured import parse_reply
from t3edge.backends.base import ImagePart, Message, TextPart
from t3edge.backends.openai import data_url
from t3edge.errors import T3Error
from t3edge.images import ImagePolicy, load_image, normalize_image

M = TypeVar("M", bound=BaseModel)

RETRYABLE_STATUS = {408, 409, 425, 429}


@dataclass
class Reply:
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    cached: bool


@functools.lru_cache(maxsize=256)
def _file_data_url(path: str, mtime: float, size: int, policy_json: str) -> str:
    policy = ImagePolicy.model_validate_json(policy_json)
    return data_url(normalize_image(load_image(path), policy))


def image_data_url(part: ImagePart, policy: ImagePolicy) -> str:
    """An image part as a PNG data URL, resized by the one image policy (files cached by mtime)."""
    if isinstance(part.image, Image.Image):
        return data_url(normalize_image(part.image, policy))
    path = Path(part.image)
    stat = path.stat() if path.is_file() else None
    return _file_data_url(str(path), stat.st_mtime if stat else 0.0, stat.st_size if stat else 0,
                          policy.model_dump_json())


def to_openai_messages(messages: Sequence[Message], policy: ImagePolicy | None = None) -> list[dict[str, Any]]:
    """Backend messages in the chat-completions shape (text-only messages stay plain strings)."""
    policy = policy or ImagePolicy()
    out: list[dict[str, Any]] = []
    for msg in messages:
        if isinstance(msg.content, str) or not msg.images:
            out.append({"role": msg.role, "content": msg.text})
            continue
        parts: list[dict[str, Any]] = []
        for part in msg.parts:
            if isinstance(part, TextPart):
                parts.append({"type": "text", "text": part.text})
            else:
                parts.append({"type": "image_url", "image_url": {"url": image_data_url(part, policy)}})
        out.append({"role": msg.role, "content": parts})
    return out


class RequestCache:
    """Replies on disk, one JSON file per request, named by the hash of the request body."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @staticmethod
    def key(body: dict[str, Any]) -> str:
        canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:  # a torn write from a killed run: ask again
            path.unlink(missing_ok=True)
            return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)


def _retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after") if exc.response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


_CONTEXT_FULL = ("n_ctx", "context length", "context_length", "maximum context", "context window")


def _refusal(exc: openai.APIStatusError) -> Exception | None:
    """What a status that retrying won't fix means: None for transient ones (429, 5xx...).

    A prompt over the context size is the item's own problem (some servers say so with a 500);
    other 4xx refuse this request for good; 401/403/404 mean the settings are wrong: stop the run.
    """
    message = str(exc.message)
    if any(marker in message.lower() for marker in _CONTEXT_FULL):
        return Rejected("context_full", message[:300])
    status = exc.status_code
    if status in (401, 403, 404):
        return T3Error(f"the API refused the request ({status}): {message[:300]}",
                       hint="check synth.api.base_url, synth.api.model and the key in synth.api.api_key_env")
    if 400 <= status < 500 and status not in RETRYABLE_STATUS:
        return Rejected("api_refused", f"http_{status}: {message[:300]}")
    return None


class SynthClient:
    """Chat completions with retries, cache, accounting and a budget. Use inside one event loop."""

    def __init__(self, api: ApiSettings, prices: Prices, ledger: Ledger, cache: RequestCache | None,
                 *, budget_usd: float | None = None, image_policy: ImagePolicy | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rng: random.Random | None = None) -> None:
        self.api = api
        self.prices = prices
        self.ledger = ledger
        self.cache = cache
        self.budget_usd = budget_usd
        self.image_policy = image_policy or ImagePolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._sem = asyncio.Semaphore(api.concurrency)
        self._openai = openai.AsyncOpenAI(
            base_url=api.base_url, api_key=os.environ.get(api.api_key_env) or "not-needed",
            max_retries=0, timeout=api.timeout_s,
        )

    async def aclose(self) -> None:
        await self._openai.close()

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.prices.input_per_mtok
                + completion_tokens * self.prices.output_per_mtok) / 1e6

    def budget_left(self) -> bool:
        return self.budget_usd is None or self.ledger.spent < self.budget_usd

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Exponential backoff with equal jitter; a server's Retry-After is a floor."""
        ceiling = min(self.api.backoff_max_s, self.api.backoff_base_s * 2 ** attempt)
        wait = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.api.backoff_max_s))
        return wait

    def request_body(self, messages: Sequence[Message], *, temperature: float, max_tokens: int,
                     stop: Sequence[str] = (), schema: type[BaseModel] | None = None,
                     seed: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.api.model,
            "messages": to_openai_messages(messages, self.image_policy),
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        if stop:
            body["stop"] = list(stop)[:4]
        if seed is not None:
            body["seed"] = seed
        if schema is not None and self.api.response_format == "json_object":
            body["response_format"] = {"type": "json_object"}
        elif schema is not None and self.api.response_format == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema.__name__, "schema": schema.model_json_schema()},
            }
        return body

    async def send(self, stage: str, body: dict[str, Any]) -> Reply:
        """One request: from the cache if it was answered before, else over HTTP with retries."""
        key = RequestCache.key(body)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.ledger.call(stage, hit["prompt_tokens"], hit["completion_tokens"], 0.0, cached=True)
                return Reply(hit["text"], hit.get("finish_reason"), hit["prompt_tokens"],
                             hit["completion_tokens"], cached=True)
        reply = await self._send_with_retries(stage, body)
        if self.cache is not None:
            self.cache.put(key, {
                "text": reply.text, "finish_reason": reply.finish_reason,
                "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
            })
        return reply

    async def _send_with_retries(self, stage: str, body: dict[str, Any]) -> Reply:
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                async with self._sem:
                    if not self.budget_left():  # checked once a slot is ours: what waited sends nothing
                        raise BudgetExhausted(
                            f"budget of ${self.budget_usd:.2f} reached (spent ${self.ledger.spent:.4f})",
                            hint="raise synth.budget_usd and run again: finished items are kept",
                        )
                    response = await self._openai.chat.completions.create(**body)
                choice = response.choices[0]
                text = choice.message.content
                if text is None:
                    raise ValueError("reply has no message content")
            except openai.APIStatusError as exc:
                reason = f"http_{exc.status_code}"
                refusal = _refusal(exc)
                if refusal is not None:
                    self.ledger.failure(stage, reason)
                    raise refusal from exc
                retry_after = _retry_after(exc)
            except openai.APITimeoutError:
                reason = "timeout"
            except openai.APIConnectionError:
                reason = "connection"
            except (openai.APIResponseValidationError, ValueError, TypeError, AttributeError, IndexError):
                reason = "bad_response"
            else:
                usage = response.usage
                prompt = usage.prompt_tokens if usage else 0
                completion = usage.completion_tokens if usage else 0
                self.ledger.call(stage, prompt, completion, self.cost(prompt, completion), cached=False)
                return Reply(text, choice.finish_reason, prompt, completion, cached=False)
            if attempt == self.api.max_retries:
                self.ledger.failure(stage, reason)
                if reason == "connection":  # nothing answers at all: no item can succeed
                    raise T3Error(f"cannot reach the API at {self.api.base_url}",
                                  hint="start the server or fix synth.api.base_url, then run again")
                raise ApiFailed("api_error", f"{reason} after {attempt} retries")
            self.ledger.retry(stage, reason)
            await self._sleep(self.backoff(attempt, retry_after))
            attempt += 1

    async def complete(self, stage: str, messages: Sequence[Message], *, temperature: float,
                       max_tokens: int, stop: Sequence[str] = (), seed: int | None = None) -> Reply:
        body = self.request_body(messages, temperature=temperature, max_tokens=max_tokens,
                                 stop=stop, seed=seed)
        return await self.send(stage, body)

    async def structured(self, stage: str, messages: Sequence[Message], model: type[M], *,
                         temperature: float, max_tokens: int, seed: int | None = None) -> M:
        """A reply validated as `model`; Rejected(`malformed_json` | `schema_mismatch`) if it isn't."""
        body = self.request_body(messages, temperature=temperature, max_tokens=max_tokens,
                                 schema=model, seed=seed)
        reply = await self.send(stage, body)
        value, repairs = parse_reply(reply.text, model)
        if repairs:
            self.ledger.repaired(stage, repairs)
        return value
