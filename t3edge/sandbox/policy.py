"""What the sandbox process may do, enforced inside it before any model-written code runs.

Four layers: OS resource limits (CPU time, address space, file size, processes), Landlock's
kernel file view where Linux has it (landlock.py), a seccomp filter against new processes,
programs and sockets (seccomp.py), and a Python audit hook that refuses
process creation, sockets, ctypes, signals, environment changes and file access outside the
allowed folders with a clear PermissionError. The audit hook also covers systems without Landlock.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from t3edge.sandbox import landlock, seccomp

BLOCKED_EVENTS = {
    "os.system": "running shell commands",
    "os.exec": "starting programs",
    "os.fork": "starting processes",
    "os.forkpty": "starting processes",
    "os.posix_spawn": "starting processes",
    "os.spawn": "starting processes",
    "os.startfile": "starting programs",
    "subprocess.Popen": "starting processes",
    "os.kill": "sending signals",
    "os.killpg": "sending signals",
    "signal.pthread_kill": "sending signals",
    "os.chdir": "changing the working folder",
    "os.chmod": "changing file permissions",
    "os.chown": "changing file owners",
    "os.chflags": "changing file flags",
    "os.setxattr": "changing file attributes",
    "os.removexattr": "changing file attributes",
    "os.mkfifo": "making special files",
    "os.mknod": "making special files",
    "os.symlink": "making links",
    "os.link": "making links",
    "socket.__new__": "network access",
    "socket.connect": "network access",
    "socket.bind": "network access",
    "socket.getaddrinfo": "network access",
    "socket.gethostbyname": "network access",
    "socket.sendto": "network access",
    "ctypes.dlopen": "loading native code",
    "ctypes.dlsym": "calling native code",
    "ctypes.dlsym/handle": "calling native code",
    "ctypes.call_function": "calling native code",
    "ctypes.addressof": "reading raw memory",
    "ctypes.cdata": "reading raw memory",
    "ctypes.cdata/buffer": "reading raw memory",
    "ctypes.string_at": "reading raw memory",
    "ctypes.wstring_at": "reading raw memory",
    "resource.setrlimit": "changing resource limits",
    "resource.prlimit": "changing resource limits",
    "sys.addaudithook": "changing the sandbox",
    "sys.settrace": "changing the sandbox",
    "sys.setprofile": "changing the sandbox",
    "sys.unraisablehook": "changing the sandbox",
    "gc.get_referrers": "walking interpreter internals",
    "gc.get_objects": "walking interpreter internals",
}

# Path events: (event, index of the path argument, writes?)
PATH_EVENTS = {
    "os.remove": (0, True), "os.rename": (0, True), "os.rmdir": (0, True), "os.mkdir": (0, True),
    "os.truncate": (0, True), "os.utime": (0, True), "shutil.rmtree": (0, True),
    "shutil.copyfile": (1, True), "shutil.move": (1, True), "shutil.copytree": (1, True),
    "os.listdir": (0, False), "os.scandir": (0, False), "glob.glob": (0, False),
}

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


@dataclass
class Limits:
    memory_mb: int
    file_size_mb: int
    cpu_s: float  # CPU time over the process's whole life


@dataclass
class FileView:
    """Folders the code may write (and read), and folders and files it may only read."""

    writable: list[str]
    readable: list[str] = field(default_factory=list)

    def allows(self, path: str, write: bool) -> bool:
        real = os.path.realpath(path)
        roots = self.writable if write else self.writable + self.readable
        return any(real == r or real.startswith(r.rstrip("/") + "/") for r in roots)


def system_read_paths() -> list[str]:
    """What Python and the allowed libraries must read: the interpreter, site-packages, system
    libraries, fonts and time zones; the process's own /proc entry; and CPU topology."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    paths.update(p for p in sys.path if p and os.path.isdir(p))
    paths.update(os.path.dirname(os.path.dirname(m.__file__ or ""))
                 for m in list(sys.modules.values()) if getattr(m, "__file__", None) and m.__name__ == "t3edge")
    paths.update(["/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/usr/share/fonts",
                  "/usr/share/zoneinfo", "/usr/share/matplotlib", "/etc/fonts", "/etc/localtime",
                  "/etc/ld.so.cache", "/dev/null", "/dev/urandom", "/dev/zero",
                  f"/proc/{os.getpid()}", "/sys/devices/system/cpu"])
    return sorted(os.path.realpath(p) for p in paths if p and os.path.exists(p))


def apply_limits(limits: Limits, *, no_processes: bool) -> list[str]:
    """Address space, file size, CPU time, no core dumps; with `no_processes`, RLIMIT_NPROC 0 (it
    counts the user's threads too on Linux, so it is used only where seccomp is not in force).
    Returns the limits this system refused to set (macOS, for one, refuses RLIMIT_AS)."""
    mem = limits.memory_mb * 1024 * 1024
    fsize = limits.file_size_mb * 1024 * 1024
    cpu = int(limits.cpu_s) + 1  # a backstop: the parent stops each step by wall time first
    wanted = [("RLIMIT_AS", (mem, mem)), ("RLIMIT_FSIZE", (fsize, fsize)),
              ("RLIMIT_CORE", (0, 0)), ("RLIMIT_CPU", (cpu, cpu + 5))]
    if no_processes:
        wanted.append(("RLIMIT_NPROC", (0, 0)))
    refused = []
    for name, value in wanted:
        try:
            resource.setrlimit(getattr(resource, name), value)
        except (ValueError, OSError, AttributeError):
            refused.append(name)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an over-large write fails instead of killing
    return refused


def install_audit_hook(view: FileView) -> Callable[[], None]:
    """Install the audit hook (for good: audit hooks cannot be removed). The returned function
    arms it; before that, everything is allowed (the sandbox's own setup)."""
    armed = [False]
    blocked = BLOCKED_EVENTS
    path_events = PATH_EVENTS
    allows = view.allows

    def hook(event: str, args: tuple) -> None:
        if not armed[0]:
            return
        if event == "open":
            path, mode, flags = (list(args) + [None, None])[:3]
            if isinstance(path, int):
                return
            write = bool((isinstance(mode, str) and any(c in mode for c in "wax+"))
                         or (isinstance(flags, int) and flags & _WRITE_FLAGS))
            name = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else str(path)
            if not allows(name, write):
                raise PermissionError(f"sandbox: {'writing' if write else 'reading'} {name} is not "
                                      "allowed (only the working folder and the attached files)")
            return
        if event in path_events:
            index, write = path_events[event]
            target = args[index] if len(args) > index else None
            if isinstance(target, (str, bytes, os.PathLike)) and not allows(os.fsdecode(target), write):
                raise PermissionError(f"sandbox: {event} on {os.fsdecode(target)} is not allowed "
                                      "(only the working folder)")
            return
        if event in blocked:
            raise PermissionError(f"sandbox: {blocked[event]} is not allowed ({event})")

    sys.addaudithook(hook)

    def arm() -> None:
        armed[0] = True

    return arm


def confine(view: FileView, limits: Limits) -> dict[str, object]:
    """Apply every layer; says which are in force (Landlock ABI 0: none). A kernel that refuses
    Landlock or seccomp (an old kernel, a container's own filter) leaves the other layers."""
    try:
        abi = landlock.restrict(view.readable, view.writable)
    except OSError:
        abi = 0
    try:
        filtered = seccomp.install()
    except OSError:
        filtered = False
    refused = apply_limits(limits, no_processes=not filtered)
    arm = install_audit_hook(view)
    arm()
    return {"landlock": abi, "seccomp": filtered, "limits_refused": refused}
