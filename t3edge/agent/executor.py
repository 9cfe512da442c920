"""The executor: model-written code runs in a confined child process (t3edge.sandbox.child).

The child keeps its variables between code blocks. The parent (this module) sends each block,
serves the tool calls the code makes (tools run here, with their arguments checked, each in a
worker thread cut off at the step's remaining time), enforces the step's wall-time limit, tool
calls included, by killing the child, and survives whatever the child does: a crash, a
kill, garbage on the pipe. A dead child is replaced by a fresh one on the next block, and the
step that killed it comes back as a clear error. Messages from the child are JSON only (never
pickle), so a compromised child cannot run code in the parent.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t3edge.agent.config import AgentConfig
from t3edge.errors import T3Error
from t3edge.sandbox.launch import PRELOAD, SandboxLost, SandboxProcess, start_process
from t3edge.tools.base import ToolSet
from t3edge.tools.bounds import ToolTimeout, call_bounded

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
STARTUP_TIMEOUT_S = 120.0
_KEEP_ENV = ("LANG", "LC_ALL", "LC_CTYPE", "TZ")


@dataclass
class ExecResult:
    """What one code block did. `error` is set when it raised or was stopped."""

    logs: str = ""
    output: Any = None
    is_final: bool = False
    error: str | None = None
    tools_called: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what tools cut to stay in bounds (also in logs)
    seconds: float = 0.0


class SandboxError(T3Error):
    """The sandbox process could not be started."""


class Sandbox:
    """One confined child process per run; `run(code)` executes a block in it."""

    def __init__(self, tools: ToolSet, workspace: Path, *, read_files: list[Path] | None = None,
                 config: AgentConfig | None = None) -> None:
        self.tools = tools
        self.workspace = Path(workspace).resolve()
        self.read_files = [Path(p).resolve() for p in read_files or []]
        self.config = config or AgentConfig()
        self.landlock_abi: int | None = None
        self.seccomp: bool | None = None
        self.limits_refused: list[str] = []
        self.capabilities_dropped = False
        self._proc: SandboxProcess | None = None
        self._rfile: Any = None
        self._wfd: int | None = None
        self._tmp: str | None = None
        self._buffer = bytearray()
        self._starter: threading.Thread | None = None
        self._start_error: BaseException | None = None

    # -- process lifetime ------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        """A clean environment: no inherited secrets, single-threaded numeric libraries."""
        env = {k: os.environ[k] for k in _KEEP_ENV if k in os.environ}
        assert self._tmp is not None
        env.update(
            PATH=os.path.dirname(sys.executable), HOME=str(self.workspace), TMPDIR=self._tmp,
            MPLCONFIGDIR=self._tmp, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1",
            PYTHONHASHSEED="0", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
            MKL_NUM_THREADS="1", OPENCV_FOR_THREADS_NUM="1",
        )
        return env

    def prestart(self) -> None:
        """Start the child in the background (its imports overlap the first model call)."""
        if self._starter is None and not self.alive:
            self._starter = threading.Thread(target=self._start_in_background, daemon=True)
            self._starter.start()

    def _start_in_background(self) -> None:
        try:
            self.start()
        except BaseException as exc:  # re-raised by the next `start` in the caller's thread
            self._start_error = exc

    def _join_starter(self) -> None:
        starter, self._starter = self._starter, None
        if starter is not None:
            starter.join()
        error, self._start_error = self._start_error, None
        if error is not None:
            raise error

    def start(self) -> None:
        if threading.current_thread() is not self._starter:
            self._join_starter()
        if self.alive:
            return
        self.workspace.mkdir(parents=True, exist_ok=True)
        self._tmp = tempfile.mkdtemp(prefix="t3edge-sandbox-")
        cpu_budget = self.config.step_timeout_s * (self.config.max_steps + 2) + 30
        try:
            self._launch()
        except SandboxLost:  # the zygote ended holding the pipes: new pipes, a new zygote
            self._launch()
        self._buffer = bytearray()
        startup_deadline = time.monotonic() + STARTUP_TIMEOUT_S
        sent = self._try_send({
            "workspace": str(self.workspace), "tmp": self._tmp,
            "read_files": [str(p) for p in self.read_files],
            "allowed_imports": self.config.allowed_imports, "tools": self.tools.names,
            "preload": list(PRELOAD), "memory_mb": self.config.memory_mb,
            "file_size_mb": self.config.file_size_mb, "cpu_s": cpu_budget,
            "max_print_chars": self.config.max_observation_chars,
            "max_message_bytes": MAX_MESSAGE_BYTES,
        }, startup_deadline)
        ready = self._receive(startup_deadline) if sent else "closed"
        if not isinstance(ready, dict) or ready.get("op") != "ready":
            detail = self._stderr_tail()
            self.stop()
            raise SandboxError(f"the code sandbox did not start: {detail or 'no answer'}",
                               hint="check that t3edge and smolagents import in this Python")
        self.landlock_abi = int(ready.get("landlock", 0))
        self.seccomp = bool(ready.get("seccomp", False))
        self.limits_refused = [str(x) for x in ready.get("limits_refused", [])]
        self.capabilities_dropped = bool(ready.get("capabilities_dropped", False))

    def _launch(self) -> None:
        """The child process, on two new pipes."""
        assert self._tmp is not None
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            with open(os.path.join(self._tmp, "stderr.txt"), "wb") as stderr:
                self._proc = start_process(self._env(), self.workspace, (to_child_r, from_child_w), stderr,
                                           fork=self.config.sandbox_start == "fork")
        except BaseException:
            os.close(to_child_w)
            os.close(from_child_r)
            raise
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        os.set_blocking(to_child_w, False)  # a child that stops reading cannot block the parent
        self._wfd, self._rfile = to_child_w, from_child_r

    @property
    def pid(self) -> int | None:
        """The sandbox process's id, while one has been started."""
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Kill the child (its whole process group) and forget its variables."""
        if self._starter is not None and threading.current_thread() is not self._starter:
            self._starter.join()
            self._starter, self._start_error = None, None
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for fd in (self._wfd, self._rfile):  # closed first: a child still alive sees end of file
            if fd is not None:
                os.close(fd)
        if proc is not None:
            proc.wait()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
        self._proc, self._wfd, self._rfile, self._tmp = None, None, None, None

    close = stop

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- messages --------------------------------------------------------------------------

    def _try_send(self, message: dict[str, Any], deadline: float) -> bool:
        """Send a message; False when the child is gone (its end of the pipe is closed) or has not
        taken it by `deadline` (a child that stops reading must not block the parent)."""
        data = memoryview(json.dumps(message).encode() + b"\n")
        while data:
            wait = deadline - time.monotonic()
            if wait <= 0:
                return False
            _, ready, _ = select.select([], [self._wfd], [], min(wait, 0.1))
            if not ready:
                continue
            try:
                data = data[os.write(self._wfd, data):]
            except BlockingIOError:
                continue
            except OSError:
                return False
        return True

    def _receive(self, deadline: float, cancel: threading.Event | None = None) -> dict[str, Any] | str:
        """The child's next message, or why there is none: "timeout", "cancelled", "closed"
        (the child's end of the pipe is gone) or "garbage" (not a JSON object, or too long)."""
        end = self._buffer.find(b"\n")
        while end < 0:
            if cancel is not None and cancel.is_set():
                return "cancelled"
            wait = deadline - time.monotonic()
            if wait <= 0:
                return "timeout"
            ready, _, _ = select.select([self._rfile], [], [], min(wait, 0.1))
            if not ready:
                continue
            chunk = os.read(self._rfile, 1 << 20)
            if not chunk:
                return "closed"
            found = chunk.find(b"\n")  # only the new part is searched: long lines stay cheap
            end = len(self._buffer) + found if found >= 0 else -1
            self._buffer += chunk
            if end > MAX_MESSAGE_BYTES or (end < 0 and len(self._buffer) > MAX_MESSAGE_BYTES):
                return "garbage"
        line = bytes(self._buffer[:end])
        del self._buffer[:end + 1]
        try:
            message = json.loads(line)
            if _SURROGATE_ESCAPE.search(line):  # lone surrogates ('\ud800') cannot be saved as UTF-8
                message = json.loads(json.dumps(message, ensure_ascii=False).encode("utf-8", "replace"))
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
            return "garbage"
        return message if isinstance(message, dict) else "garbage"

    def _stderr_tail(self) -> str:
        if not self._tmp:
            return ""
        try:
            lines = Path(self._tmp, "stderr.txt").read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    # -- running code ----------------------------------------------------------------------

    def run(self, code: str, cancel: threading.Event | None = None) -> ExecResult:
        """Execute one code block with the step's time limit; never raises for what the code does."""
        self._join_starter()
        if not self.alive:
            self.stop()
            self.start()
        start = time.monotonic()
        result = ExecResult()
        nonce = secrets.token_hex(8)  # the child echoes it: a forged reply cannot match
        deadline = start + self.config.step_timeout_s
        sent = self._try_send({"op": "exec", "code": code, "nonce": nonce}, deadline)
        while True:
            message = self._receive(deadline, cancel) if sent else "closed"
            if isinstance(message, str):
                result.error = self._failure(message)
                self.stop()
                break
            if message.get("op") == "tool" and message.get("nonce") == nonce:
                tool_timeout = self._serve_tool(message, result, deadline, cancel)
                if tool_timeout is not None:  # cut at the step's deadline (or cancelled)
                    result.error = self._failure("cancelled" if cancel is not None and cancel.is_set()
                                                 else "timeout", tool_timeout)
                    self.stop()
                    break
                continue
            if message.get("op") == "done" and message.get("nonce") == nonce:
                result.logs = printable(str(message.get("logs") or ""))
                error = message.get("error")
                result.error = printable(str(error)) if error is not None else None
                result.is_final = bool(message.get("is_final")) and result.error is None
                result.output = printable(message.get("output")) if result.is_final else None
                break
            result.error = self._failure("garbage")
            self.stop()
            break
        if result.notes:
            kept = result.logs.rstrip("\n")
            result.logs = (kept + "\n" if kept else "") + "\n".join(printable(result.notes)) + "\n"
        result.seconds = time.monotonic() - start
        return result

    def _failure(self, why: str, tool: str | None = None) -> str:
        """A clear message for a step whose child did not answer properly (it is then stopped);
        `tool`: the tool call that was running when the step ran out of time."""
        lost = " Variables from earlier steps are lost."
        if why == "cancelled":
            return "Execution was cancelled."
        if why == "timeout":
            during = f" (the tool {tool} was still running: it was cut off)" if tool else ""
            return (f"The code ran longer than the {self.config.step_timeout_s:g} s limit of a step, tool "
                    f"calls included{during}, and was stopped.{lost} Make it faster or do less per step.")
        if why == "garbage":
            return ("The code wrote to the sandbox's control channel, so the sandbox was restarted."
                    f"{lost} Use print() for output.")
        try:
            code = self._proc.wait(timeout=2) if self._proc is not None else None
        except subprocess.TimeoutExpired:
            return f"The code closed the sandbox's control channel, so the sandbox was restarted.{lost}"
        if code is None or code == 0:
            return f"The code ended the sandbox process.{lost}"
        if code < 0:
            name = signal.Signals(-code).name
            why = {"SIGXCPU": "it used more CPU time than allowed", "SIGKILL": "it was killed",
                   "SIGSEGV": "it crashed (segmentation fault)", "SIGSYS": "it made a forbidden system call",
                   "SIGXFSZ": "it wrote a file larger than allowed"}.get(name, f"signal {name}")
            return f"The sandbox process stopped: {why}.{lost}"
        return f"The sandbox process exited with status {code}.{lost}"

    def _serve_tool(self, message: dict[str, Any], result: ExecResult, deadline: float,
                    cancel: threading.Event | None) -> str | None:
        """Run one tool call within the step's remaining time (and `tool_timeout_s`) and send the
        child its result. Returns the tool's name when the call was cut at the step's deadline or
        cancelled (the step then ends); a call cut at `tool_timeout_s` is an error for the code."""
        name = message.get("name")
        args, kwargs = message.get("args") or [], message.get("kwargs") or {}
        if not isinstance(name, str) or not isinstance(args, list) or not isinstance(kwargs, dict):
            reply = {"op": "tool_result", "ok": False, "error": "malformed tool call"}
        else:
            result.tools_called.append(name)
            left = deadline - time.monotonic()
            limit = self.config.tool_timeout_s
            timeout = left if limit is None else min(left, limit)
            try:
                value, notes = call_bounded(name, lambda: self.tools.call(name, args, kwargs), timeout,
                                            cancel)
                result.notes.extend(notes)
                json.dumps(value)
                reply = {"op": "tool_result", "ok": True, "value": value}
            except ToolTimeout as exc:
                if limit is None or left <= limit or (cancel is not None and cancel.is_set()):
                    return name
                reply = {"op": "tool_result", "ok": False, "error": f"{exc}; give it less to do"}
            except T3Error as exc:
                reply = {"op": "tool_result", "ok": False, "error": str(exc)}
            except Exception as exc:  # a tool's own bug must not end the run: it is an observation
                reply = {"op": "tool_result", "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        # if the child died or stopped reading, the next receive reports it
        self._try_send(reply, deadline)
        return None


def printable(value: Any) -> Any:
    """`value` with terminal control characters (escape sequences, bells, carriage returns...)
    removed from every string in it, so that what the code printed cannot drive the terminal
    that shows it. Tabs and newlines stay."""
    if isinstance(value, str):
        return _CONTROL.sub("", value)
    if not isinstance(value, (list, dict)):
        return value
    root: list[Any] = [value]
    stack: list[tuple[Any, Any]] = [(root, 0)]  # (container, key) pairs to clean, iteratively
    while stack:
        container, key = stack.pop()
        item = container[key]
        if isinstance(item, str):
            container[key] = _CONTROL.sub("", item)
        elif isinstance(item, list):
            stack.extend((item, i) for i in range(len(item)))
        elif isinstance(item, dict):
            container[key] = item = {_CONTROL.sub("", k): v for k, v in item.items()}
            stack.extend((item, k) for k in item)
    return root[0]

