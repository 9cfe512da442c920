"""`t3edge serve`: the local agent behind an OpenAI-compatible HTTP API (Starlette, run by uvicorn).

    POST /v1/chat/completions   a task for the agent (the last user message; earlier ones continue
                                the chat), or with a model name ending ":raw" (or
                                "t3edge_agent": false) one plain generation; stream or not
    GET  /v1/models             the agent and its plain-generation twin
    GET  /v1/trajectories/{id}  a run's whole trajectory (its id is in every response)
    GET  /health                liveness and queue length

One model serves every client: requests wait their turn in arrival order (an asyncio lock is
fair), the model runs in a worker thread, and a client that disconnects (or runs past the time
limit) has its run cancelled, which frees the model at its next token. Errors are OpenAI-style JSON
(`{"error": {"message", "type"}}`) with a 4xx or 5xx status; the server stays up.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from t3edge.agent.config import AgentConfig
from t3edge.agent.events import (
    AgentEvent,
    CodeParsed,
    FinalAnswer,
    Notice,
    ObservationEvent,
    ParseFailed,
    RunFinished,
    StepError,
    StepStarted,
    TokenDelta,
)
from t3edge.backends.base import Backend, Completion, GenerationConfig, TextDelta
from t3edge.chat import Chat, new_task
from t3edge.chats import ChatStore
from t3edge.errors import T3Error
from t3edge.serve.conversations import answer_text, earlier_turns, find_chat
from t3edge.serve.requests import (
    RAW_SUFFIX,
    CompletionRequest,
    RequestError,
    Uploads,
    backend_messages,
    parse_request,
    task_turn,
)
from t3edge.trajectory import Task, Trajectory

KEEPALIVE_S = 0.5  # an SSE comment this often while a stream has nothing to send (finds gone clients)
_DONE = object()


@dataclass
class ServeSettings:
    """What `t3edge serve` was started with."""

    model_name: str
    agent: AgentConfig = field(default_factory=AgentConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    api_key: str | None = None
    uploads: Path = Path("uploads")
    allowed_paths: list[Path] = field(default_factory=list)
    max_body_bytes: int = 32 * 2**20
    max_run_s: float = 600.0
    max_tokens: int = 4096  # a plain generation's cap
    max_queue: int = 64  # requests waiting for the model; more are refused (503)


class Failed:
    """An exception raised in the model's thread, handed to the request."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class ModelQueue:
    """The one model, lent to one request at a time in arrival order."""

    def __init__(self, max_waiting: int) -> None:
        self._lock = asyncio.Lock()
        self.max_waiting = max_waiting
        self.waiting = 0

    async def run(self, work: Callable[[Callable[[object], None]], None],
                  cancel: threading.Event) -> AsyncIterator[object]:
        """Wait for the model, run `work(emit)` in a thread and yield what it emits. Leaving early
        (a gone client) cancels the work; the model is lent again once the work has stopped."""
        if self.waiting >= self.max_waiting:
            raise RequestError(503, f"the server is busy ({self.waiting} requests waiting); try again later",
                               kind="server_busy")
        self.waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self.waiting -= 1
        if cancel.is_set():  # the client left while it waited
            self._lock.release()
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()

        def emit(item: object) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def body() -> None:
            try:
                work(emit)
            except Exception as exc:  # noqa: BLE001 - handed to the request, which answers with it
                emit(Failed(exc))
            finally:
                emit(_DONE)

        future = loop.run_in_executor(None, body)
        future.add_done_callback(lambda _: self._lock.release())
        try:
            while (item := await queue.get()) is not _DONE:
                yield item
        finally:
            if not future.done():
                cancel.set()


class ClosingStream(StreamingResponse):
    """A streamed response that closes its body generator however the stream ends (a client that
    went away included), so the run behind it is cancelled at once."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()  # type: ignore[union-attr]


def error_response(exc: RequestError) -> JSONResponse:
    return JSONResponse({"error": {"message": exc.message, "type": exc.kind, "code": exc.status}},
                        status_code=exc.status)


def _step_text(event: AgentEvent) -> str | None:
    """How a streamed run reads in a plain client: the model's own words as it writes them, then
    what its code printed (Markdown)."""
    if isinstance(event, TokenDelta):
        return event.text
    if isinstance(event, StepStarted):
        return "\n\n" if event.index > 0 else None
    if isinstance(event, ObservationEvent):
        return f"\n\nObservation:\n```\n{event.text.rstrip()}\n```"
    if isinstance(event, StepError):
        return f"\n\nError:\n```\n{event.error.rstrip()}\n```"
    if isinstance(event, ParseFailed):
        return f"\n\n(no code: {event.problem})"
    return None


def _event_record(event: AgentEvent) -> dict[str, Any] | None:
    """The typed event a t3edge-aware client reads from a chunk's `t3edge` field."""
    if isinstance(event, CodeParsed):
        return {"event": "code", "index": event.index, "thought": event.thought, "code": event.code}
    if isinstance(event, ObservationEvent):
        return {"event": "observation", "index": event.index, "text": event.text, "files": event.produced_files}
    if isinstance(event, StepError):
        return {"event": "error", "index": event.index, "error": event.error}
    if isinstance(event, ParseFailed):
        return {"event": "parse_failed", "index": event.index, "problem": event.problem}
    if isinstance(event, FinalAnswer):
        return {"event": "final_answer", "answer": event.answer}
    if isinstance(event, Notice):
        return {"event": "notice", "text": event.text}
    return None


def _finish_reason(traj: Trajectory) -> str:
    return "stop" if traj.ended == "final_answer" else "length"


def _reply(traj: Trajectory) -> str:
    if traj.final_answer is not None:
        return answer_text(traj.final_answer)
    return f"(no answer: the run ended by {traj.ended}{': ' + traj.error if traj.error else ''})"


def _run_facts(traj: Trajectory, chat_id: str | None, notice: str | None) -> dict[str, Any]:
    facts = {"trajectory_id": traj.task.id, "chat_id": chat_id, "ended": traj.ended, "steps": len(traj.steps)}
    return facts | ({"notice": notice} if notice else {})


def _sse(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False, default=str)}\n\n"


def _sse_error(message: str) -> str:
    """An error in the middle of a stream (OpenAI clients raise it)."""
    return _sse({"error": {"message": message, "type": "server_error"}})


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class Server:
    """The routes over one loaded model and one chat store."""

    def __init__(self, backend: Backend, store: ChatStore, settings: ServeSettings) -> None:
        self.backend = backend
        self.store = store
        self.settings = settings
        self.queue = ModelQueue(settings.max_queue)
        self.uploads = Uploads(settings.uploads, settings.allowed_paths)

    def app(self) -> Starlette:
        routes = [
            Route("/v1/chat/completions", self.completions, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/trajectories/{task_id}", self.trajectory, methods=["GET"]),
            Route("/health", self.health, methods=["GET"]),
        ]
        return Starlette(routes=routes, exception_handlers={HTTPException: self._http_error})

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(RequestError(exc.status_code, exc.detail or "request refused"))

    # -- checks ----------------------------------------------------------------------------------

    def _authorize(self, request: Request) -> None:
        key = self.settings.api_key
        if key is None:
            return
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {key}".encode()):
            raise RequestError(401, "a valid API key is required (Authorization: Bearer <key>)",
                               kind="authentication_error")

    async def _body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestError(413, f"the request is larger than the server's {limit // 2**20} MB limit "
                                    "(--max-body-mb); send smaller images", kind="request_too_large")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise RequestError(413, f"the request is larger than the server's {limit // 2**20} MB limit "
                                        "(--max-body-mb); send smaller images", kind="request_too_large")
        return bytes(body)

    # -- routes ----------------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": self.settings.model_name, "waiting": self.queue.waiting})

    async def models(self, request: Request) -> Response:
        try:
            self._authorize(request)
        except RequestError as exc:
            return error_response(exc)
        name = self.settings.model_name
        return JSONResponse({"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "t3edge"},
            {"id": name + RAW_SUFFIX, "object": "model", "created": 0, "owned_by": "t3edge"},
        ]})

    async def trajectory(self, request: Request) -> Response:
        try:
            self._authorize(request)
            traj = await asyncio.to_thread(self.store.trajectory, request.path_params["task_id"])
        except RequestError as exc:
            return error_response(exc)
        except T3Error as exc:
            return error_response(RequestError(404, str(exc), kind="not_found_error"))
        return Response(traj.model_dump_json(), media_type="application/json")

    async def completions(self, request: Request) -> Response:
        try:
            self._authorize(request)
            req = parse_request(await self._body(request))
            if req.agent:
                return await self._agent(request, req)
            return await self._generate(request, req)
        except RequestError as exc:
            return error_response(exc)
        except ClientDisconnect:
            return Response(status_code=499)

    # -- the agent -------------------------------------------------------------------------------

    def _chat(self, req: CompletionRequest) -> tuple[Chat, str | None]:
        """The chat the request runs in, and a notice when its history could not be matched."""
        config = self.settings.agent.model_copy(update={"approve": "never"})
        if req.t3edge_max_steps is not None:
            config = config.model_copy(update={"max_steps": min(req.t3edge_max_steps, config.max_steps)})
        if req.t3edge_chat is not None:
            try:
                return Chat.resume(self.backend, self.store, req.t3edge_chat, config=config), None
            except T3Error as exc:
                raise RequestError(404, str(exc), kind="not_found_error") from exc
        turns = earlier_turns(req.messages)
        chat_id = find_chat(self.store, turns)
        if chat_id is not None:
            return Chat.resume(self.backend, self.store, chat_id, config=config), None
        notice = ("the earlier messages match no saved chat, so this task starts a new one "
                  "(name the chat with t3edge_chat to continue it)") if turns else None
        return Chat(self.backend, config=config, store=self.store), notice

    def _task(self, req: CompletionRequest) -> Task:
        """The task of the request's last message, its files saved and checked."""
        last = req.messages[-1]
        if last.role != "user":
            raise RequestError(400, "the last message must be the user's task")
        query, files = task_turn(last, self.uploads)
        if not query.strip():
            raise RequestError(400, "the last user message has no text: say what to do")
        try:
            return new_task(query, files)
        except T3Error as exc:
            raise RequestError(400, str(exc)) from exc

    async def _agent(self, request: Request, req: CompletionRequest) -> Response:
        chat, notice = await asyncio.to_thread(self._chat, req)
        task = await asyncio.to_thread(self._task, req)
        cancel = threading.Event()

        def work(emit: Callable[[object], None]) -> None:
            problem = chat.problem(task)  # in the model's turn: it may count tokens
            if problem is not None:
                raise RequestError(400, f"this task cannot continue chat {chat.chat_id}: {problem}")
            for event in chat.run(task, cancel):
                emit(event)

        events = self._guarded(request, self.queue.run(work, cancel), cancel)
        created = int(time.time())
        cid = f"chatcmpl-{task.id}"
        if req.stream:
            return ClosingStream(self._stream(events, self._agent_chunks(chat, cid, created, notice)),
                                 media_type="text/event-stream")
        trajectory: Trajectory | None = None
        async with aclosing(events):
            async for item in events:
                if isinstance(item, Failed):
                    raise item.exc if isinstance(item.exc, RequestError) else \
                        RequestError(500, f"the run failed: {item.exc}", kind="server_error")
                if isinstance(item, RunFinished):
                    trajectory = item.trajectory
        if trajectory is None:
            return Response(status_code=499)  # the client left before its turn
        if trajectory.ended == "backend_error":
            raise RequestError(502, f"the model failed: {trajectory.error}", kind="server_error")
        tokens = trajectory.tokens
        return JSONResponse({
            "id": cid, "object": "chat.completion", "created": created, "model": self.settings.model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": _reply(trajectory)},
                         "finish_reason": _finish_reason(trajectory)}],
            "usage": _usage(tokens["in"], tokens["out"]),
            "t3edge": _run_facts(trajectory, chat.chat_id, notice),
        })

    def _agent_chunks(self, chat: Chat, cid: str, created: int, notice: str | None) -> Callable[[object], list[str]]:
        """How each agent event goes out in a stream: a chunk whose text a plain client shows and
        whose `t3edge` field a t3edge-aware client reads; the last one carries the run's facts."""
        def chunk(content: str, finish: str | None = None, **extra: Any) -> str:
            return _sse({"id": cid, "object": "chat.completion.chunk", "created": created,
                         "model": self.settings.model_name,
                         "choices": [{"index": 0, "delta": {"role": "assistant", "content": content},
                                      "finish_reason": finish}], **extra})

        def render(item: object) -> list[str]:
            if isinstance(item, RunFinished):
                traj = item.trajectory
                if traj.ended == "backend_error":
                    return [_sse_error(f"the model failed: {traj.error}")]
                tokens = traj.tokens
                return [chunk(f"\n\nAnswer: {_reply(traj)}", _finish_reason(traj), usage=_usage(tokens["in"], tokens["out"]),
                              t3edge=_run_facts(traj, chat.chat_id, notice))]
            text, record = _step_text(item), _event_record(item)  # type: ignore[arg-type]
            if record is not None:
                return [chunk(text or "", t3edge=record)]
            return [] if text is None else [chunk(text)]

        return render

    # -- plain generation ------------------------------------------------------------------------

    async def _generate(self, request: Request, req: CompletionRequest) -> Response:
        messages = backend_messages(req.messages, self.uploads)
        if not self.backend.supports_images and any(m.images for m in messages):
            raise RequestError(400, f"{self.settings.model_name} is a text-only model: it cannot read images")
        config = req.generation(self.settings.generation, self.settings.max_tokens)
        cancel = threading.Event()

        def work(emit: Callable[[object], None]) -> None:
            stream = self.backend.stream(messages, config)
            try:
                for item in stream:
                    emit(item)
                    if cancel.is_set() and not isinstance(item, Completion):  # cut short: say so
                        raise RequestError(503, "the generation was stopped before it finished (the server's "
                                                "time limit, --max-run-s, or the client left)", kind="server_error")
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()

        events = self._guarded(request, self.queue.run(work, cancel), cancel)
        created = int(time.time())
        cid = f"chatcmpl-{secrets.token_hex(8)}"
        if req.stream:
            return ClosingStream(self._stream(events, self._generation_chunks(cid, created)),
                                 media_type="text/event-stream")
        completion: Completion | None = None
        async with aclosing(events):
            async for item in events:
                if isinstance(item, Failed):
                    raise RequestError(500, f"the generation failed: {item.exc}", kind="server_error")
                if isinstance(item, Completion):
                    completion = item
        if completion is None:
            return Response(status_code=499)
        u = completion.usage
        return JSONResponse({
            "id": cid, "object": "chat.completion", "created": created, "model": self.settings.model_name + RAW_SUFFIX,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": completion.text},
                         "finish_reason": "length" if completion.finish_reason == "length" else "stop"}],
            "usage": _usage(u.prompt_tokens, u.generated_tokens),
        })

    def _generation_chunks(self, cid: str, created: int) -> Callable[[object], list[str]]:
        """How a plain generation goes out in a stream: its text deltas, then how it finished."""
        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            return _sse({"id": cid, "object": "chat.completion.chunk", "created": created,
                         "model": self.settings.model_name + RAW_SUFFIX,
                         "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})

        def render(item: object) -> list[str]:
            if isinstance(item, TextDelta):
                return [chunk({"role": "assistant", "content": item.text})]
            if isinstance(item, Completion):
                u = item.usage
                return [chunk({}, "length" if item.finish_reason == "length" else "stop",
                              usage=_usage(u.prompt_tokens, u.generated_tokens))]
            return []

        return render

    async def _stream(self, events: AsyncIterator[object], render: Callable[[object], list[str]]) -> AsyncIterator[str]:
        """Server-sent events: each item as `render` makes it, a comment while nothing comes, an
        error event if the work failed, then `[DONE]`."""
        async with aclosing(self._with_keepalive(events)) as items:
            async for item in items:
                if item is None:
                    yield ": waiting\n\n"
                elif isinstance(item, Failed):
                    failure = item.exc
                    yield _sse_error(failure.message if isinstance(failure, RequestError) else f"the run failed: {failure}")
                    break
                else:
                    for line in render(item):
                        yield line
        yield "data: [DONE]\n\n"

    # -- limits ----------------------------------------------------------------------------------

    async def _guarded(self, request: Request, events: AsyncIterator[object],
                       cancel: threading.Event) -> AsyncIterator[object]:
        """`events`, with the run cancelled when its client goes away or it passes the time limit
        (`--max-run-s`)."""
        timer = asyncio.get_running_loop().call_later(self.settings.max_run_s, cancel.set)

        async def watch() -> None:
            while not cancel.is_set():
                if await request.is_disconnected():
                    cancel.set()
                    return
                await asyncio.sleep(0.2)

        watcher = asyncio.create_task(watch())
        try:
            async for item in events:
                yield item
        finally:
            timer.cancel()
            watcher.cancel()
            await events.aclose()  # type: ignore[attr-defined]

    @staticmethod
    async def _with_keepalive(events: AsyncIterator[object]) -> AsyncIterator[object | None]:
        """`events`, with None whenever nothing came for KEEPALIVE_S (a stream then sends a comment,
        which is how a gone client is noticed between steps)."""
        iterator = events.__aiter__()
        pending: asyncio.Task[object] | None = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(iterator.__anext__())
                done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_S)
                if not done:
                    yield None
                    continue
                try:
                    item = pending.result()
                except StopAsyncIteration:
                    return
                pending = None
                yield item
        finally:
            if pending is not None:  # let the cancelled step end before the generator is closed
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)
            await events.aclose()  # type: ignore[attr-defined]
