"""The sandbox process: confines itself, then runs code blocks with smolagents' interpreter.

Started by `t3edge.agent.executor.Sandbox` with two pipe descriptors as arguments; it talks
JSON lines over two pipes. Variables persist between code blocks. Tools are proxies that send
(name, args) to the parent, which runs the real tool and sends the result back.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, BinaryIO

from smolagents import local_python_executor as lpe

from t3edge.sandbox.hardening import guard_format_strings, guard_opencv
from t3edge.sandbox.policy import FileView, Limits, confine, system_read_paths

_dumps, _loads = json.dumps, json.loads  # bound now: model code may patch the json module


class ToolCallError(Exception):
    """A tool refused its arguments or failed; the message says why."""


def plain(value: Any) -> Any:
    """JSON fallback: numpy values and arrays, paths, sets and tuples become plain values."""
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"a {type(value).__name__} cannot be passed here; pass a path, text or numbers")


class Channel:
    def __init__(self, rfile: BinaryIO, wfile: BinaryIO) -> None:
        self.rfile, self.wfile = rfile, wfile
        self.nonce = ""  # of the code block being run; every message about it carries it

    def send(self, message: dict[str, Any]) -> None:
        self.wfile.write(_dumps(message, default=plain).encode() + b"\n")
        self.wfile.flush()

    def receive(self) -> dict[str, Any]:
        line = self.rfile.readline()
        if not line:
            raise SystemExit(0)  # the parent closed the pipe
        return _loads(line)


def make_proxy(channel: Channel, name: str) -> Any:
    def proxy(*args: Any, **kwargs: Any) -> Any:
        try:
            request = _dumps({"op": "tool", "name": name, "args": list(args), "kwargs": kwargs,
                              "nonce": channel.nonce}, default=plain)
        except (TypeError, ValueError) as exc:
            raise ToolCallError(f"{name}: {exc}") from None
        channel.wfile.write(request.encode() + b"\n")
        channel.wfile.flush()
        reply = channel.receive()
        if not reply.get("ok"):
            raise ToolCallError(f"{name} failed: {reply.get('error')}")
        return reply.get("value")

    proxy.__name__ = name
    return proxy


def final_answer(answer: Any) -> Any:
    """End the task with this answer."""
    return answer


def serve(channel: Channel) -> None:
    init = channel.receive()
    os.chdir(init["workspace"])
    for name in init["preload"]:
        __import__(name)
    allowed = [n for name in init["allowed_imports"] for n in (name, f"{name}.*")]
    executor = lpe.LocalPythonExecutor(
        additional_authorized_imports=allowed,
        max_print_outputs_length=int(init["max_print_chars"]),
        timeout_seconds=None,  # the parent stops a step by wall time, for real
    )
    tools = {name: make_proxy(channel, name) for name in init["tools"]}
    tools["final_answer"] = final_answer
    tools["open"] = open  # vetted by the audit hook and Landlock: workspace and attachments only
    executor.send_tools(tools)
    view = FileView(writable=[os.path.realpath(p) for p in (init["workspace"], init["tmp"])],
                    readable=system_read_paths() + [os.path.realpath(p) for p in init["read_files"]])
    guard_format_strings()
    guard_opencv(view)
    layers = confine(view, Limits(init["memory_mb"], init["file_size_mb"], init["cpu_s"]))
    channel.send({"op": "ready", **layers})
    while True:
        request = channel.receive()
        if request.get("op") != "exec":
            continue
        channel.nonce = request["nonce"]
        reply: dict[str, Any] = {"op": "done", "logs": "", "output": None, "is_final": False,
                                 "error": None, "nonce": channel.nonce}
        try:
            result = executor(request["code"])
            reply.update(logs=result.logs, is_final=result.is_final_answer,
                         output=result.output if result.is_final_answer else None)
        except SystemExit as exc:
            reply["logs"] = str(executor.state.get("_print_outputs", ""))
            reply["error"] = (f"SystemExit({exc.code}): the code may not exit the interpreter; "
                              "call final_answer(...) to finish")
        except BaseException as exc:  # everything else the code raises, KeyboardInterrupt included
            reply["logs"] = str(executor.state.get("_print_outputs", ""))
            reply["error"] = str(exc) if isinstance(exc, lpe.InterpreterError) else f"{type(exc).__name__}: {exc}"
        try:
            channel.send(reply)
        except (TypeError, ValueError):
            reply["output"] = repr(reply["output"])
            channel.send(reply)


def main() -> None:
    rfd, wfd = int(sys.argv[1]), int(sys.argv[2])
    serve(Channel(os.fdopen(rfd, "rb"), os.fdopen(wfd, "wb")))
