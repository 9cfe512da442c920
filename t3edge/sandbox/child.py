"""The sandbox process: confines itself, then runs code blocks with smolagents' interpreter.

Started by `t3edge.sandbox.launch` (forked by the zygote, or as a new interpreter given two pipe
descriptors as arguments); it talks JSON lines over two pipes. Variables persist between code
blocks. Tools are proxies that send (name, args) to the parent, which runs the real tool and
sends the result back.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, BinaryIO

from smolagents import local_python_executor as lpe

from t3edge.sandbox.hardening import harden_interpreter
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
        self.max_bytes = 1 << 24  # the parent's limit, set from its first message

    def encode(self, message: dict[str, Any]) -> bytes:
        """One JSON line; ValueError/TypeError says why a message cannot be sent."""
        try:
            data = _dumps(message, default=plain).encode()
        except RecursionError:
            raise ValueError("it is nested too deeply") from None
        if len(data) >= self.max_bytes:
            raise ValueError(f"it is too large ({len(data) / 2**20:.0f} MB; the limit is "
                             f"{self.max_bytes / 2**20:.0f} MB)")
        return data + b"\n"

    def send(self, message: dict[str, Any]) -> None:
        self.write(self.encode(message))

    def write(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def receive(self) -> dict[str, Any]:
        line = self.rfile.readline()
        if not line:
            raise SystemExit(0)  # the parent closed the pipe
        return _loads(line)


def make_proxy(channel: Channel, name: str) -> Any:
    def proxy(*args: Any, **kwargs: Any) -> Any:
        try:
            request = channel.encode({"op": "tool", "name": name, "args": list(args), "kwargs": kwargs,
                                      "nonce": channel.nonce})
        except (TypeError, ValueError) as exc:
            raise ToolCallError(f"{name}: the arguments cannot be passed: {exc}") from None
        channel.write(request)
        reply = channel.receive()
        if not reply.get("ok"):
            raise ToolCallError(f"{name} failed: {reply.get('error')}")
        return reply.get("value")

    proxy.__name__ = name
    return proxy


def final_answer(answer: Any) -> Any:
    """End the task with this answer."""
    return answer


def run_block(executor: lpe.LocalPythonExecutor, code: str, nonce: str, max_chars: int) -> dict[str, Any]:
    """Run one code block; the reply for the parent (whatever the code raised)."""
    reply: dict[str, Any] = {"op": "done", "logs": "", "output": None, "is_final": False,
                             "error": None, "nonce": nonce}
    try:
        result = executor(code)
        reply.update(logs=result.logs, is_final=result.is_final_answer,
                     output=result.output if result.is_final_answer else None)
    except SystemExit as exc:
        reply["error"] = (f"SystemExit({exc.code}): the code may not exit the interpreter; "
                          "call final_answer(...) to finish")
    except BaseException as exc:  # everything else the code raises, KeyboardInterrupt included
        reply["error"] = str(exc) if isinstance(exc, lpe.InterpreterError) else f"{type(exc).__name__}: {exc}"
    if reply["error"] is not None:
        reply["logs"] = lpe.truncate_content(str(executor.state.get("_print_outputs", "")), max_chars)
        reply["error"] = lpe.truncate_content(reply["error"], max_chars)
    return reply


def encode_reply(channel: Channel, reply: dict[str, Any]) -> bytes:
    """The reply as a line; a final answer that cannot travel becomes its repr, or an error."""
    try:
        return channel.encode(reply)
    except (TypeError, ValueError) as exc:
        problem = exc
    if reply["is_final"]:
        try:
            return channel.encode({**reply, "output": repr(reply["output"])})
        except (TypeError, ValueError, RecursionError) as exc:
            problem = exc
    return channel.encode({**reply, "output": None, "is_final": False, "error": (
        f"The result could not be sent back: {problem}. Give a shorter final answer, or save large "
        "results in a file in the working folder and give its path.")})


def serve(channel: Channel) -> None:
    init = channel.receive()
    channel.max_bytes = int(init["max_message_bytes"])
    max_chars = int(init["max_print_chars"])
    os.chdir(init["workspace"])
    for name in init["preload"]:
        __import__(name)
    allowed = [n for name in init["allowed_imports"] for n in (name, f"{name}.*")]
    executor = lpe.LocalPythonExecutor(
        additional_authorized_imports=allowed,
        max_print_outputs_length=max_chars,
        timeout_seconds=None,  # the parent stops a step by wall time, for real
    )
    tools = {name: make_proxy(channel, name) for name in init["tools"]}
    tools["final_answer"] = final_answer
    tools["open"] = open  # vetted by the audit hook and Landlock: workspace and attachments only
    executor.send_tools(tools)
    view = FileView(writable=[os.path.realpath(p) for p in (init["workspace"], init["tmp"])],
                    readable=system_read_paths() + [os.path.realpath(p) for p in init["read_files"]])
    harden_interpreter(view)
    # sympy's lambdify imports its numeric backends in code it compiles itself
    exec_imports = [*init["allowed_imports"], "mpmath", "scipy"]
    layers = confine(view, Limits(init["memory_mb"], init["file_size_mb"], init["cpu_s"]), exec_imports)
    channel.send({"op": "ready", **layers})
    while True:
        request = channel.receive()
        if request.get("op") != "exec":
            continue
        channel.nonce = request["nonce"]
        channel.write(encode_reply(channel, run_block(executor, request["code"], channel.nonce, max_chars)))


def run(rfd: int, wfd: int) -> None:
    """Serve the parent on these pipe descriptors until it closes them."""
    serve(Channel(os.fdopen(rfd, "rb"), os.fdopen(wfd, "wb")))


def main() -> None:
    run(int(sys.argv[1]), int(sys.argv[2]))
