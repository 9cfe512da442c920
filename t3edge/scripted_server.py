"""A small OpenAI-compatible HTTP server with scripted replies, on 127.0.0.1.

For deterministic tests and demos of anything that talks to an OpenAI-compatible API: each
request to /v1/chat/completions is answered by a responder function, which may also inject
faults (an HTTP error status, a hang, a malformed body). Every request is recorded.

    with ScriptedOpenAIServer(lambda req: "Thought: ...") as server:
        client = OpenAI(base_url=server.url, api_key="x")
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Fault:
    """A scripted failure: an error `status`, a `hang_s` pause before replying (or instead of it,
    if `then` is None), or a raw malformed `body` with status 200."""

    status: int | None = None
    hang_s: float = 0.0
    body: str | None = None
    then: str | None = None  # a reply to send after the hang
    cut: bool = False  # stream `then` but end without a finish reason (a server that cut it short)


Reply = str | Fault
Responder = Callable[[dict[str, Any]], Reply]


def _count(text: str) -> int:
    return len(text.split())


def _apply_stop(text: str, stop: str | list[str] | None) -> str:
    """Cut the reply at the first stop string, as real servers do."""
    stops = [stop] if isinstance(stop, str) else (stop or [])
    cuts = [text.find(s) for s in stops if s and s in text]
    return text[: min(cuts)] if cuts else text


def _prompt_tokens(request: dict[str, Any]) -> int:
    total = 0
    for msg in request.get("messages", []):
        content = msg.get("content")
        if isinstance(content, str):
            total += _count(content) + 3
        elif isinstance(content, list):
            for part in content:
                total += _count(part.get("text", "")) if part.get("type") == "text" else 16
            total += 3
    return total


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms ACK stall

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": [
                {"id": self.server.owner.model, "object": "model", "owned_by": "scripted"}]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        try:
            request = json.loads(raw)
        except ValueError:
            self._json(400, {"error": {"message": "request body is not JSON"}})
            return
        owner = self.server.owner
        owner._record(request)
        if owner.latency_s:
            time.sleep(owner.latency_s)
        reply = owner.responder(request)
        if isinstance(reply, Fault):
            if reply.hang_s:
                time.sleep(reply.hang_s)
            if reply.status is not None:
                self._json(reply.status, {"error": {"message": f"scripted {reply.status}",
                                                    "type": "scripted_fault"}})
                return
            if reply.body is not None:
                self._send(200, reply.body.encode(), "application/json")
                return
            if reply.then is None:
                self.close_connection = True
                return
            cut, reply = reply.cut, reply.then
        else:
            cut = False
        reply = _apply_stop(reply, request.get("stop"))
        if request.get("stream"):
            self._stream(request, reply, finish=not cut)
        else:
            self._json(200, self._completion(request, reply))

    def _completion(self, request: dict[str, Any], text: str) -> dict[str, Any]:
        prompt = _prompt_tokens(request)
        return {
            "id": "chatcmpl-scripted", "object": "chat.completion", "created": int(time.time()),
            "model": request.get("model", self.server.owner.model),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": _count(text),
                      "total_tokens": prompt + _count(text)},
        }

    def _stream(self, request: dict[str, Any], text: str, finish: bool = True) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        words = text.split(" ")
        base = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": request.get("model", self.server.owner.model)}
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            self._event({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
        if finish:
            self._event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if finish and (request.get("stream_options") or {}).get("include_usage"):
            prompt = _prompt_tokens(request)
            self._event({**base, "choices": [], "usage": {
                "prompt_tokens": prompt, "completion_tokens": _count(text),
                "total_tokens": prompt + _count(text)}})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    def _event(self, data: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(data).encode() + b"\n\n")
        self.wfile.flush()

    def _json(self, status: int, data: dict[str, Any]) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default listen backlog (5) drops bursts of concurrent connects
    owner: ScriptedOpenAIServer


class ScriptedOpenAIServer:
    """An OpenAI-compatible server whose replies come from `responder(request_json)`."""

    def __init__(self, responder: Responder, *, latency_s: float = 0.0, model: str = "scripted") -> None:
        self.responder = responder
        self.latency_s = latency_s
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def _record(self, request: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(request)

    def start(self) -> ScriptedOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ScriptedOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def sequence(*replies: Reply) -> Responder:
    """A responder that gives `replies` in order, one per request (the last one repeats)."""
    state = {"i": 0}
    lock = threading.Lock()

    def respond(_request: dict[str, Any]) -> Reply:
        with lock:
            i = min(state["i"], len(replies) - 1)
            state["i"] += 1
        return replies[i]

    return respond
