"""Linux seccomp: the kernel refuses new processes, program execution and sockets in the sandbox.

A small classic-BPF filter, installed with prctl through ctypes: fork, vfork, clone without
CLONE_THREAD, execve(at), socket(pair), ptrace, process_vm_*, io_uring, unshare, setns, mounts,
chroot, bpf, perf_event_open, userfaultfd, kernel modules and keys, file handles and the clock
fail with EPERM, and so does a signal to any process but the sandbox itself; clone3 fails with
ENOSYS (the C library then falls back to clone, so threads still work). Whatever asks (Python or
a C library) gets the same answer. A syscall of another ABI (x32, i386) ends the process.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import sys

_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
_RET_ALLOW, _RET_ERRNO, _RET_KILL_PROCESS = 0x7FFF0000, 0x00050000, 0x80000000
_LD_ABS_W, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_CLONE_THREAD = 0x00010000
_X32_BIT = 0x40000000

# machine -> (audit arch, {refused syscall: number}, {signal syscall: number}, clone); clone3 is
# 435 on both. The refused ones: new processes and programs, sockets, other processes' memory,
# namespaces, mounts, kernel modules and keys, file handles, chroot, the clock, reboot, kernel log.
_TABLES = {
    "x86_64": (0xC000003E, {
        "fork": 57, "vfork": 58, "execve": 59, "execveat": 322, "socket": 41, "socketpair": 53,
        "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "unshare": 272,
        "setns": 308, "mount": 165, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "chroot": 161, "pivot_root": 155, "umount2": 166, "swapon": 167, "swapoff": 168,
        "reboot": 169, "sethostname": 170, "setdomainname": 171, "iopl": 172, "ioperm": 173,
        "init_module": 175, "finit_module": 313, "delete_module": 176, "kexec_load": 246,
        "kexec_file_load": 320, "quotactl": 179, "acct": 163, "settimeofday": 164, "adjtimex": 159,
        "clock_settime": 227, "clock_adjtime": 305, "syslog": 103, "add_key": 248,
        "request_key": 249, "keyctl": 250, "open_by_handle_at": 304, "kcmp": 312,
        "fanotify_init": 300, "vhangup": 153, "tkill": 200, "pidfd_send_signal": 424,
        "pidfd_getfd": 438, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
        "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    }, {"kill": 62, "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297}, 56),
    "aarch64": (0xC00000B7, {
        "execve": 221, "execveat": 281, "socket": 198, "socketpair": 199, "ptrace": 117,
        "process_vm_readv": 270, "process_vm_writev": 271, "unshare": 97, "setns": 268,
        "mount": 40, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "chroot": 51, "pivot_root": 41, "umount2": 39, "swapon": 224, "swapoff": 225,
        "reboot": 142, "sethostname": 161, "setdomainname": 162, "init_module": 105,
        "finit_module": 273, "delete_module": 106, "kexec_load": 104, "kexec_file_load": 294,
        "quotactl": 60, "acct": 89, "settimeofday": 170, "adjtimex": 171, "clock_settime": 112,
        "clock_adjtime": 266, "syslog": 116, "add_key": 217, "request_key": 218, "keyctl": 219,
        "open_by_handle_at": 265, "kcmp": 272, "fanotify_init": 262, "vhangup": 58, "tkill": 130,
        "pidfd_send_signal": 424, "pidfd_getfd": 438, "open_tree": 428, "move_mount": 429,
        "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    }, {"kill": 129, "tgkill": 131, "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240}, 220),
}
_CLONE3 = 435


class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Insn))]


def supported() -> bool:
    return sys.platform.startswith("linux") and platform.machine() in _TABLES


def _program(arch: int, refused: dict[str, int], signals: dict[str, int], clone: int,
             pid: int) -> list[tuple[int, int, int, int]]:
    """The filter; jumps (forward only) are resolved from labels. Signals may only go to `pid`
    itself (the sandbox process), never to its parent or anyone else."""
    code: list[tuple[int, str | int, str | int, int]] = [
        (_LD_ABS_W, 0, 0, 4),  # seccomp_data.arch
        (_JEQ, 1, 0, arch),
        (_RET, 0, 0, _RET_KILL_PROCESS),
        (_LD_ABS_W, 0, 0, 0),  # seccomp_data.nr
        (_JGE, "eperm", 0, _X32_BIT),
        *[(_JEQ, "eperm", 0, n) for n in refused.values()],
        *[(_JEQ, "signal", 0, n) for n in signals.values()],
        (_JEQ, "clone", 0, clone),
        (_JEQ, "enosys", 0, _CLONE3),
        (_RET, 0, 0, _RET_ALLOW),
        (_LD_ABS_W, 0, 0, 16),  # "signal": low 32 bits of args[0], the target process
        (_JEQ, "allow", "eperm", pid),
        (_LD_ABS_W, 0, 0, 16),  # "clone": low 32 bits of args[0], the clone flags
        (_JSET, "allow", "eperm", _CLONE_THREAD),
        (_RET, 0, 0, _RET_ALLOW),  # "allow"
        (_RET, 0, 0, _RET_ERRNO | errno.EPERM),  # "eperm"
        (_RET, 0, 0, _RET_ERRNO | errno.ENOSYS),  # "enosys"
    ]
    n = len(code)
    labels = {"signal": n - 7, "clone": n - 5, "allow": n - 3, "eperm": n - 2, "enosys": n - 1}

    def rel(target: str | int, at: int) -> int:
        return target if isinstance(target, int) else labels[target] - at - 1

    program = [(op, rel(jt, i), rel(jf, i), k) for i, (op, jt, jf, k) in enumerate(code)]
    assert all(0 <= jt < 256 and 0 <= jf < 256 for _, jt, jf, _ in program), "a jump is too long"
    return program


def install() -> bool:
    """Install the filter for this process and its threads, for good. False where unsupported."""
    if not supported():
        return False
    insns = _program(*_TABLES[platform.machine()], os.getpid())
    array = (_Insn * len(insns))(*[_Insn(*i) for i in insns])
    prog = _Prog(len(insns), ctypes.cast(array, ctypes.POINTER(_Insn)))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "installing the seccomp filter failed")
    return True
