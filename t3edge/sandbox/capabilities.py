"""Linux capabilities: a sandbox started by root gives up root's powers (reading any file,
signalling any process, chroot, raw devices...) while keeping its user id, so the files of its
working folder stay writable. Nothing to do for an ordinary user, who holds no capabilities."""

from __future__ import annotations

import ctypes
import os
import platform
import sys

_CAPSET = {"x86_64": 126, "aarch64": 91}
_VERSION_3 = 0x20080522


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def drop_all() -> bool:
    """Clear this process's capability sets for good. False where there is nothing to drop (not
    root) or the system cannot (not Linux, an unknown machine)."""
    number = _CAPSET.get(platform.machine())
    if not sys.platform.startswith("linux") or number is None or os.geteuid() != 0:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = _Header(_VERSION_3, 0), (_Data * 2)()
    if libc.syscall(number, ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
    return True
