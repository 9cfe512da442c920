"""Linux seccomp: the kernel refuses new processes, program execution and sockets in the sandbox.

A small classic-BPF filter, installed with prctl through ctypes: fork, vfork, clone without
CLONE_THREAD, execve(at), socket(pair), ptrace, process_vm_*, io_uring, unshare, setns, mount,
bpf, perf_event_open and userfaultfd fail with EPERM; clone3 fails with ENOSYS (the C library then
falls back to clone, so threads still work). Whatever asks (Python or a C library) gets the same
answer. A syscall of another ABI (x32, i386) ends the process.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import sys

_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
_RET_ALLOW, _RET_ERRNO, _RET_KILL_PROCESS = 0x7FFF0000, 0x00050000, 0x80000000
_LD_ABS_W, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_CLONE_THREAD = 0x00010000
_X32_BIT = 0x40000000

# machine -> (audit arch, {syscall: number}); clone3 is 435 on both.
_TABLES = {
    "x86_64": (0xC000003E, {
        "fork": 57, "vfork": 58, "execve": 59, "execveat": 322, "socket": 41, "socketpair": 53,
        "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "unshare": 272,
        "setns": 308, "mount": 165, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "clone": 56,
    }),
    "aarch64": (0xC00000B7, {
        "execve": 221, "execveat": 281, "socket": 198, "socketpair": 199, "ptrace": 117,
        "process_vm_readv": 270, "process_vm_writev": 271, "unshare": 97, "setns": 268,
        "mount": 40, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "clone": 220,
    }),
}
_CLONE3 = 435


class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Insn))]


def supported() -> bool:
    return sys.platform.startswith("linux") and platform.machine() in _TABLES


def _program(arch: int, numbers: dict[str, int]) -> list[tuple[int, int, int, int]]:
    """The filter; jumps (forward only) are resolved from labels."""
    blocked = [n for name, n in numbers.items() if name != "clone"]
    code: list[tuple[int, str | int, str | int, int]] = [
        (_LD_ABS_W, 0, 0, 4),  # seccomp_data.arch
        (_JEQ, 1, 0, arch),
        (_RET, 0, 0, _RET_KILL_PROCESS),
        (_LD_ABS_W, 0, 0, 0),  # seccomp_data.nr
        (_JGE, "eperm", 0, _X32_BIT),
        *[(_JEQ, "eperm", 0, n) for n in blocked],
        (_JEQ, "clone", 0, numbers["clone"]),
        (_JEQ, "enosys", 0, _CLONE3),
        (_RET, 0, 0, _RET_ALLOW),
        (_LD_ABS_W, 0, 0, 16),  # "clone": low 32 bits of args[0], the clone flags
        (_JSET, "allow", "eperm", _CLONE_THREAD),
        (_RET, 0, 0, _RET_ALLOW),  # "allow"
        (_RET, 0, 0, _RET_ERRNO | errno.EPERM),  # "eperm"
        (_RET, 0, 0, _RET_ERRNO | errno.ENOSYS),  # "enosys"
    ]
    n = len(code)
    labels = {"clone": n - 5, "allow": n - 3, "eperm": n - 2, "enosys": n - 1}

    def rel(target: str | int, at: int) -> int:
        return target if isinstance(target, int) else labels[target] - at - 1

    return [(op, rel(jt, i), rel(jf, i), k) for i, (op, jt, jf, k) in enumerate(code)]


def install() -> bool:
    """Install the filter for this process and its threads, for good. False where unsupported."""
    if not supported():
        return False
    arch, numbers = _TABLES[platform.machine()]
    insns = _program(arch, numbers)
    array = (_Insn * len(insns))(*[_Insn(*i) for i in insns])
    prog = _Prog(len(insns), ctypes.cast(array, ctypes.POINTER(_Insn)))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "installing the seccomp filter failed")
    return True
