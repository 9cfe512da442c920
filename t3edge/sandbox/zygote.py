"""A prepared parent for sandbox processes: the imports are paid once, a fresh child is forked per run.

Started once per t3edge process by `t3edge.sandbox.launch.Zygote`, with the same clean environment
a sandbox gets and one end of a Unix SOCK_SEQPACKET socket. Each request on the socket carries the
new child's two pipe ends and its stderr file as descriptors (SCM_RIGHTS), its environment and its
working folder. The zygote forks; the child closes everything of the zygote's, starts its own
session, and is from then on the process `t3edge.sandbox.child` would be: it confines itself on
its first message. The zygote reports each child's pid, and its exit status once reaped.

The zygote holds no secret (it never sees the parent's environment, files or data) and never runs
model-written code; it forks only while it has a single thread. It exits when the t3edge process
closes its end of the socket, however that process ended, and takes the sandboxes still running
with it (killing each one's process group: they cannot outlive the run that owns them).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
import tempfile
import traceback
from typing import Any, NoReturn

from t3edge.sandbox import child
from t3edge.sandbox.launch import PRELOAD

MAX_REQUEST_BYTES = 1 << 20


def thread_count() -> int:
    """Threads of this process (fork copies only the calling one: it must be the only one)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0  # unknown: the launcher then never forks


def send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.send(json.dumps(message).encode())


def close_all_but(keep: set[int]) -> None:
    low = 0
    for fd in sorted(keep):
        if low < fd:  # closerange(n, n) would close everything from n up
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def become_sandbox(request: dict[str, Any], fds: list[int], sock: socket.socket, in_session: int) -> NoReturn:
    """In the forked child: shed the zygote, then serve as a sandbox process; never returns.
    `in_session`: closed once the child leads its own session (the zygote waits for that)."""
    code = 1
    try:
        os.setsid()  # its own process group, before the launcher hears of it: it kills the group
        os.close(in_session)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        sock.detach()  # the descriptor is closed next; the object must never close a reused number
        rfd, wfd, errfd = fds
        os.dup2(errfd, 2)
        close_all_but({0, 1, 2, rfd, wfd})  # the zygote's socket above all
        os.environ.clear()
        os.environ.update(request["env"])
        tempfile.tempdir = None  # TMPDIR is this child's
        os.chdir(request["cwd"])
        import numpy

        numpy.random.seed()  # fresh entropy (Python's `random` reseeds itself after a fork)
        child.run(rfd, wfd)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:  # anything before the sandbox serves: say what, then exit
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def reap(sock: socket.socket, live: set[int]) -> None:
    """Collect every child that has ended and report its status (as Popen.returncode)."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        live.discard(pid)
        send(sock, {"op": "exited", "pid": pid, "returncode": os.waitstatus_to_exitcode(status)})


def end_all(live: set[int]) -> None:
    """Kill the process group of every child not yet reaped (its pid cannot have been reused)."""
    for pid in live:
        with contextlib.suppress(ProcessLookupError):  # no member left: nothing to kill
            os.killpg(pid, signal.SIGKILL)


def serve(sock: socket.socket) -> None:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # the wakeup byte is what matters
    send(sock, {"op": "hello", "threads": thread_count()})
    live: set[int] = set()  # children started and not yet reaped
    while True:
        ready, _, _ = select.select([sock, wake_r], [], [])
        if wake_r in ready:
            while True:
                try:
                    if not os.read(wake_r, 512):
                        break
                except BlockingIOError:
                    break
            reap(sock, live)
        if sock not in ready:
            continue
        try:
            data, fds, _, _ = socket.recv_fds(sock, MAX_REQUEST_BYTES, 3)
        except ConnectionError:
            data, fds = b"", []
        if not data:  # the t3edge process has gone: so do the sandboxes it left running
            end_all(live)
            return
        try:
            request = json.loads(data)
            if len(fds) != 3:
                raise ValueError(f"expected 3 descriptors, got {len(fds)}")
            if thread_count() != 1:
                raise RuntimeError(f"the zygote has {thread_count()} threads; forking is unsafe")
            session_r, session_w = os.pipe()
            try:
                pid = os.fork()
            except OSError:
                os.close(session_r)
                os.close(session_w)
                raise
        except (ValueError, RuntimeError, OSError) as exc:
            for fd in fds:
                os.close(fd)
            send(sock, {"op": "refused", "error": f"{type(exc).__name__}: {exc}"})
            continue
        if pid == 0:
            os.close(session_r)
            become_sandbox(request, fds, sock, session_w)
        os.close(session_w)
        os.read(session_r, 1)  # end of file once the child leads its session (or has died)
        os.close(session_r)
        for fd in fds:
            os.close(fd)
        live.add(pid)
        send(sock, {"op": "started", "pid": pid})


def main() -> None:
    for name in PRELOAD:
        __import__(name)
    serve(socket.socket(fileno=int(sys.argv[1])))
