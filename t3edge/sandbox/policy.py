"""What the sandbox process may do, enforced inside it before any model-written code runs.

Five layers: OS resource limits (CPU time, address space, file size, processes), Landlock's
kernel file view where Linux has it (landlock.py), a seccomp filter against new processes,
programs, sockets and signals to others (seccomp.py), no capabilities when started by root
(capabilities.py), and a Python audit hook that refuses process creation, sockets, ctypes,
signals, unsafe pickles and file access outside the allowed folders with a clear PermissionError.
The audit hook also covers systems without Landlock.
"""

from __future__ import annotations

import dis
import os
import pathlib
import posix
import resource
import signal
import stat
import sys
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from t3edge.sandbox import capabilities, landlock, seccomp

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

# Path events: event -> ((index of a path argument, writes?), ...)
_W, _R = True, False
PATH_EVENTS = {
    "os.remove": ((0, _W),), "os.rename": ((0, _W), (1, _W)), "os.rmdir": ((0, _W),),
    "os.mkdir": ((0, _W),), "os.truncate": ((0, _W),), "os.utime": ((0, _W),),
    "shutil.rmtree": ((0, _W),), "shutil.copyfile": ((0, _R), (1, _W)),
    "shutil.copystat": ((0, _R), (1, _W)), "shutil.move": ((0, _W), (1, _W)),
    "shutil.copytree": ((0, _R), (1, _W)), "os.listdir": ((0, _R),), "os.scandir": ((0, _R),),
    "glob.glob": ((0, _R),), "os.getxattr": ((0, _R),), "os.listxattr": ((0, _R),),
}

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

# What pickled data (pandas.read_pickle, numpy.load(allow_pickle=True)) may reference: data types
# of these packages, and plain containers. Anything else (os.system, builtins.exec...) is refused.
PICKLE_MODULES = ("numpy", "pandas", "pyarrow", "datetime", "collections", "copyreg", "_codecs",
                  "decimal", "fractions", "zoneinfo", "pytz", "dateutil")
PICKLE_BUILTINS = {"bytearray", "bytes", "bool", "complex", "dict", "float", "frozenset", "int",
                   "list", "object", "range", "set", "slice", "str", "tuple"}
# Names that code compiled from a string at run time (sympy's sympify and lambdify, PIL's
# ImageMath, any library's eval of text the code handed it) may not use: the ways from a plain
# object to the interpreter's internals, and the builtins that run code or open files.
EXEC_FORBIDDEN_NAMES = frozenset({
    "__import__", "__builtins__", "__subclasses__", "__globals__", "__code__", "__closure__",
    "__getattribute__", "__loader__", "__spec__", "__mro__", "__bases__", "__base__",
    "__traceback__", "__reduce__", "__reduce_ex__", "__self__", "__func__", "tb_frame",
    "gi_frame", "cr_frame", "ag_frame", "f_back", "f_globals", "f_locals", "f_builtins",
    "_getframe", "eval", "exec", "compile", "open", "getattr", "setattr", "delattr", "globals",
    "locals", "vars", "breakpoint",
})


def _make_resolver() -> Callable[[str], str]:
    """`os.path.realpath` built only from C functions bound now, so that code which patches the
    os module later cannot change what the audit hook sees."""
    lstat, readlink, getcwd, is_link = posix.lstat, posix.readlink, posix.getcwd, stat.S_ISLNK
    os_error = OSError

    def resolve(path: str) -> str:
        if not path.startswith("/"):
            path = getcwd() + "/" + path
        done: list[str] = []
        todo = path.split("/")[::-1]
        hops = 0
        while todo:
            part = todo.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            candidate = "/" + "/".join([*done, part])
            try:
                link = is_link(lstat(candidate).st_mode)
            except os_error:
                link = False
            if link and hops < 40:
                hops += 1
                try:
                    target = readlink(candidate)
                except os_error:
                    target = part  # gone meanwhile: judge the name itself
                if target.startswith("/"):
                    done = []
                todo.extend(target.split("/")[::-1])
                continue
            done.append(part)
        return "/" + "/".join(done)

    return resolve


@dataclass
class Limits:
    memory_mb: int
    file_size_mb: int
    cpu_s: float  # CPU time over the process's whole life


@dataclass(frozen=True)
class FileView:
    """Folders the code may write (and read), and folders and files it may only read."""

    writable: tuple[str, ...]
    readable: tuple[str, ...] = ()
    _resolve: Callable[[str], str] = field(default_factory=_make_resolver, repr=False, compare=False)

    def __post_init__(self) -> None:  # tuples: nothing can add a folder later
        object.__setattr__(self, "writable", tuple(self.writable))
        object.__setattr__(self, "readable", tuple(self.readable))

    def allows(self, path: str, write: bool) -> bool:
        real = self._resolve(path)
        roots = self.writable if write else self.writable + self.readable
        for root in roots:
            if real == root or real.startswith(root.rstrip("/") + "/"):
                return True
        return False


def system_read_paths() -> list[str]:
    """What Python and the allowed libraries must read: the interpreter, site-packages, system
    libraries, fonts, time zones and MIME types (openpyxl, and so pandas.read_excel, loads them);
    the process's own /proc entry; and CPU topology."""
    import mimetypes

    import t3edge

    package = os.path.dirname(os.path.realpath(t3edge.__file__ or ""))
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    source_tree = os.path.dirname(package)  # a source checkout: only the package itself is needed
    if any(source_tree.startswith(os.path.realpath(p) + "/") for p in prefixes):
        source_tree = ""
    paths = {*prefixes, package}
    paths.update(p for p in sys.path if p and os.path.isdir(p) and os.path.realpath(p) != source_tree)
    paths.update(["/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/usr/share/fonts",
                  "/usr/share/zoneinfo", "/usr/share/matplotlib", "/etc/fonts", "/etc/localtime",
                  "/etc/ld.so.cache", "/dev/null", "/dev/urandom", "/dev/zero",
                  f"/proc/{os.getpid()}", "/sys/devices/system/cpu", *mimetypes.knownfiles])
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


def install_audit_hook(view: FileView, exec_imports: Iterable[str] = ()) -> None:
    """Install the audit hook, in force at once and for good (audit hooks cannot be removed).
    Code compiled from text at run time may import only the packages in `exec_imports`.

    Everything it uses is bound here, and it never calls code it is given (a path object's own
    `__fspath__`, say), so the code it watches cannot change its answers."""
    blocked, path_events, allows = dict(BLOCKED_EVENTS), dict(PATH_EVENTS), view.allows
    pickle_modules, pickle_builtins = PICKLE_MODULES, frozenset(PICKLE_BUILTINS)
    path_types, dir_entry = (pathlib.PurePosixPath, pathlib.PosixPath), posix.DirEntry
    path_str, denied, write_flags = pathlib.PurePath.__str__, PermissionError, _WRITE_FLAGS
    text, raw, number, kind_of, size, listed, has_any = str, bytes, int, type, len, list, any
    code_type, exec_forbidden = types.CodeType, EXEC_FORBIDDEN_NAMES
    importable, instructions, modules = frozenset(exec_imports), dis.get_instructions, sys.modules

    def forbidden_names(code: types.CodeType) -> set[str]:
        found = set(exec_forbidden.intersection(code.co_names + code.co_varnames))
        found.update(f"import {i.argval}" for i in instructions(code) if i.opname == "IMPORT_NAME"
                     and kind_of(i.argval) is text and i.argval.partition(".")[0] not in importable)
        for const in code.co_consts:
            if kind_of(const) is code_type:
                found |= forbidden_names(const)
        return found

    def as_text(path: object) -> str | None:
        kind = kind_of(path)
        if kind is text:
            return path  # type: ignore[return-value]
        if kind is raw:
            return raw.decode(path, "utf-8", "surrogateescape")  # type: ignore[arg-type]
        if kind in path_types:
            return path_str(path)  # type: ignore[arg-type]
        if kind is dir_entry:
            return as_text(path.path)  # type: ignore[attr-defined]
        return None

    def check_path(event: str, path: object, write: bool) -> None:
        name = as_text(path)
        if name is None:
            raise denied(f"sandbox: give {event} a path as text, not a {kind_of(path).__name__}")
        if not allows(name, write):
            raise denied(f"sandbox: {'writing' if write else 'reading'} {name} is not allowed "
                         "(only the working folder and the attached files)")

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = (listed(args) + [None, None])[:3]
            if path is None or kind_of(path) is number:
                return
            write = ((kind_of(mode) is text and has_any(c in mode for c in "wax+"))
                     or (kind_of(flags) is number and flags & write_flags != 0))
            check_path(event, path, write)
        elif event in path_events:
            for index, write in path_events[event]:
                if size(args) > index and args[index] is not None and kind_of(args[index]) is not number:
                    check_path(event, args[index], write)
        elif event == "exec":
            code = args[0] if size(args) else None
            if (kind_of(code) is code_type and code.co_filename.startswith("<")
                    and not code.co_filename.startswith("<frozen")):  # frozen: the standard library
                found = forbidden_names(code)
                if found:
                    raise denied(f"sandbox: evaluating text that uses {', '.join(sorted(found))} "
                                 "is not allowed")
        elif event == "pickle.find_class":
            module, name = (listed(args) + ["", ""])[:2]
            top = module.partition(".")[0] if kind_of(module) is text else ""
            if not (top in pickle_modules or (module in ("builtins", "__builtin__") and name in pickle_builtins)):
                raise denied(f"sandbox: pickled data may not use {module}.{name}; "
                             "only numpy, pandas and plain data can be unpickled")
            if top == "pandas" and "pandas" not in modules:  # imported by the code: its eval is checked
                raise denied("sandbox: import pandas before loading pickled pandas data")
        elif event in blocked:
            raise denied(f"sandbox: {blocked[event]} is not allowed ({event})")

    sys.addaudithook(hook)


def confine(view: FileView, limits: Limits, exec_imports: Iterable[str] = ()) -> dict[str, object]:
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
    try:
        dropped = capabilities.drop_all()
    except OSError:
        dropped = False
    refused = apply_limits(limits, no_processes=not filtered)
    install_audit_hook(view, exec_imports)
    return {"landlock": abi, "seccomp": filtered, "capabilities_dropped": dropped,
            "limits_refused": refused}
