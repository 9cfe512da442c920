"""Starting a sandbox process: forked from a prepared zygote in milliseconds, or a new interpreter.

`start_process` returns a handle with the part of `subprocess.Popen` the executor uses (`pid`,
`poll`, `wait`). With `fork` on Linux, the first start launches the zygote
(`t3edge.sandbox.zygote`, once per t3edge process, about as long as one interpreter start) and
every start forks it: the child is a new process with nothing of another run's, which confines
itself exactly as a new interpreter does. Elsewhere, or where the zygote cannot fork safely, each
sandbox is a new interpreter.

This module runs in the t3edge process; the zygote imports only `PRELOAD` from it.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any, Protocol

# Imported before the sandbox confines itself (by the zygote once, or by each new interpreter).
PRELOAD = ("numpy", "PIL.Image", "cv2")
PER_RUN_ENV = ("HOME", "TMPDIR", "MPLCONFIGDIR")  # set per sandbox; the zygote's: an empty folder
ZYGOTE_START_TIMEOUT_S = 120.0
UNKNOWN_STATUS = 255  # the zygote ended before it could report a child's status
# `-I` keeps the user's site folder, PYTHONPATH and the working folder off the import path; the
# package root is added back explicitly.
_BOOT = "import sys; sys.path.insert(0, {root!r}); from t3edge.sandbox.{module} import main; main()"


class SandboxProcess(Protocol):
    pid: int

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


class ZygoteUnavailable(Exception):
    """The zygote has ended, or refused to fork; the caller starts a new interpreter instead."""


class SandboxLost(ZygoteUnavailable):
    """The zygote ended after it was given the pipes: start again on new ones."""


def import_root() -> str:
    """The folder holding the t3edge package."""
    import t3edge

    return str(Path(t3edge.__file__).resolve().parent.parent)


def boot_command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-I", "-c", _BOOT.format(root=import_root(), module=module), *args]


def spawn(env: dict[str, str], cwd: Path, child_fds: tuple[int, int], stderr: IO[bytes]) -> subprocess.Popen[bytes]:
    """A new interpreter running `t3edge.sandbox.child` on the two pipe descriptors."""
    return subprocess.Popen(
        boot_command("child", *map(str, child_fds)), pass_fds=child_fds, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=stderr, cwd=cwd, env=env, start_new_session=True,
    )


class Forked:
    """A sandbox process forked by the zygote, which reaps it and reports its status."""

    def __init__(self, zygote: Zygote, pid: int) -> None:
        self.zygote, self.pid = zygote, pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.zygote.returncode(self.pid, timeout=0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self.zygote.returncode(self.pid, timeout=timeout)
            if self.returncode is None:
                raise subprocess.TimeoutExpired(f"sandbox process {self.pid}", timeout or 0.0)
        return self.returncode


class Zygote:
    """The t3edge side of the zygote: one request at a time, exits collected by a reader thread."""

    def __init__(self, env: dict[str, str]) -> None:
        self.home = tempfile.mkdtemp(prefix="t3edge-zygote-")  # its HOME, TMPDIR: empty, its own
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                boot_command("zygote", str(theirs.fileno())), pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                cwd=self.home, env={**env, **dict.fromkeys(PER_RUN_ENV, self.home)},
                start_new_session=True)
        except OSError:
            shutil.rmtree(self.home, ignore_errors=True)
            raise
        finally:
            theirs.close()
        self.sock = ours
        self._requests = threading.Lock()
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._changed = threading.Condition()
        self._exits: dict[int, int] = {}
        self.alive = True
        ours.settimeout(ZYGOTE_START_TIMEOUT_S)
        try:
            hello = json.loads(ours.recv(4096) or b"{}")
        except (OSError, ValueError):
            hello = {}
        ours.settimeout(None)
        if hello.get("threads") != 1:  # it could not start, or forking it would be unsafe
            self.close()
            raise ZygoteUnavailable(f"the zygote did not start ({hello or 'no answer'})")
        threading.Thread(target=self._read, name="t3edge-zygote", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                message = json.loads(self.sock.recv(4096) or b"null")
                if message is None:
                    break
                op, pid = message["op"], message.get("pid")
                with self._changed:
                    if op == "exited":
                        self._exits[int(pid)] = int(message["returncode"])
                        self._changed.notify_all()
                    elif op == "started":
                        self._exits.pop(int(pid), None)  # an unclaimed record of an earlier process
            except (OSError, ValueError, KeyError, TypeError):
                break  # a zygote that cannot be understood is as good as gone
            if op != "exited":
                self._replies.put(message)
        self._mark_dead()

    def _mark_dead(self) -> None:
        with self._changed:
            self.alive = False
            self._changed.notify_all()
        self._replies.put(None)

    def fork(self, env: dict[str, str], cwd: Path, fds: list[int]) -> Forked:
        """A new sandbox process on the pipe descriptors `fds` (read, write, stderr)."""
        with self._requests:
            if not self.alive:
                raise ZygoteUnavailable("the zygote has ended")
            try:
                socket.send_fds(self.sock, [json.dumps({"env": env, "cwd": str(cwd)}).encode()], fds)
            except OSError as exc:  # nothing was forked: the caller may try a new zygote
                self.proc.kill()
                self._mark_dead()
                raise ZygoteUnavailable(f"the zygote is unreachable: {exc}") from None
            try:
                reply = self._replies.get(timeout=ZYGOTE_START_TIMEOUT_S)
            except queue.Empty:
                reply = None
            if reply is None:  # it may have forked a child on these pipes: they are spoiled
                self.proc.kill()
                self._mark_dead()
                raise SandboxLost("the zygote ended while it started a sandbox")
        if reply.get("op") != "started":
            raise ZygoteUnavailable(f"the zygote refused: {reply.get('error')}")
        return Forked(self, int(reply["pid"]))

    def returncode(self, pid: int, timeout: float | None) -> int | None:
        """`pid`'s exit status once it has ended (waiting up to `timeout`), else None."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            self._changed.wait_for(lambda: pid in self._exits or not self.alive, timeout)
            if pid in self._exits:
                return self._exits.pop(pid)
        if self.alive:
            return None
        # the zygote is gone and its children were handed to init, which may never reap them
        while not _ended(pid):
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.02)
        return UNKNOWN_STATUS

    def close(self) -> None:
        """End the zygote (its children, in sessions of their own, run on) and its folder."""
        self.sock.close()
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.home, ignore_errors=True)


def _ended(pid: int) -> bool:
    """Whether process `pid` has ended (gone, or a zombie nobody has reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


_zygote: Zygote | None = None
_zygote_lock = threading.Lock()
_fork_unusable: str | None = None  # why this process starts new interpreters instead


def _current_zygote(env: dict[str, str]) -> Zygote | None:
    global _zygote, _fork_unusable
    with _zygote_lock:
        if _zygote is not None and not _zygote.alive:
            _zygote.close()
            _zygote = None
        if _zygote is None and _fork_unusable is None:
            try:
                _zygote = Zygote({k: v for k, v in env.items() if k not in PER_RUN_ENV})
            except (OSError, ZygoteUnavailable) as exc:
                _fork_unusable = str(exc)
        return _zygote


@atexit.register
def _end_zygote() -> None:
    if _zygote is not None:
        _zygote.close()


def _forget_zygote() -> None:
    """In a forked copy of this process: the zygote belongs to the original."""
    global _zygote
    if _zygote is not None:
        _zygote.sock.close()
    _zygote = None


os.register_at_fork(after_in_child=_forget_zygote)


def fork_available() -> bool:
    return sys.platform.startswith("linux") and hasattr(socket, "send_fds")


def why_not_forking() -> str | None:
    """Why sandboxes of this process start as new interpreters (None while they are forked)."""
    return _fork_unusable if fork_available() else f"forking is not used on {sys.platform}"


def start_process(env: dict[str, str], cwd: Path, child_fds: tuple[int, int], stderr: IO[bytes], *,
                  fork: bool) -> SandboxProcess:
    """A sandbox process on the pipe descriptors `child_fds` (it reads the first, writes the second),
    forked from the zygote when `fork` and this system allow it, else a new interpreter.
    SandboxLost: the zygote ended with these pipes in hand; start again on new ones."""
    if fork and fork_available():
        for _ in range(2):  # a zygote that has ended is replaced once
            zygote = _current_zygote(env)
            if zygote is None:
                break
            try:
                return zygote.fork(env, cwd, [*child_fds, stderr.fileno()])
            except SandboxLost:
                raise
            except ZygoteUnavailable as exc:
                if zygote.alive:  # it refused (say, it has threads): new interpreters from now on
                    _give_up_forking(str(exc))
                    break
    return spawn(env, cwd, child_fds, stderr)


def _give_up_forking(why: str) -> None:
    global _fork_unusable
    with _zygote_lock:
        _fork_unusable = why
