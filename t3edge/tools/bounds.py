"""Bounds on one tool call (docs/agent.md, "The sandbox"): the call runs in a worker thread with a
wall-time limit, and the tool leaves notes on what it cut (a resized image, pages not read) for
the step's observation.

A thread cannot be killed: a tool cut at its limit is abandoned, told to stop (`stop_requested`),
and left to finish in the background. Tools that use the loaded model stop at its next token, and
`call_bounded` waits for that, so the model is never used by two calls at once.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from t3edge.images import load_image_within
from t3edge.tools.base import ToolError

_POLL_S = 0.1  # how often a waiting call checks the run's cancel event
_local = threading.local()


class ToolTimeout(ToolError):
    """A tool call ran past its wall-time limit and was cut off."""


@dataclass
class ToolCall:
    """The state of one bounded call, seen by the tool through this module's functions."""

    name: str
    stop: threading.Event = field(default_factory=threading.Event)
    model_lock: threading.Lock = field(default_factory=threading.Lock)
    notes: list[str] = field(default_factory=list)


def _current() -> ToolCall | None:
    return getattr(_local, "call", None)


def note(text: str) -> None:
    """Tell the model what the tool did to stay in its bounds (shown after the step's output).
    Outside a bounded call (a tool called directly from Python) the note is not shown."""
    call = _current()
    if call is not None:
        call.notes.append(f"[{call.name}: {text}]")


def stop_requested() -> bool:
    """Whether the current call was cut off and should stop (always False outside one)."""
    call = _current()
    return call is not None and call.stop.is_set()


@contextlib.contextmanager
def using_model() -> Iterator[None]:
    """Hold the current call's model lock while it uses the loaded model (see `call_bounded`)."""
    call = _current()
    if call is None:
        yield
        return
    with call.model_lock:
        if call.stop.is_set():
            raise ToolTimeout(f"{call.name} was cut off before it used the model")
        yield


def call_bounded(name: str, fn: Callable[[], Any], timeout_s: float,
                 cancel: threading.Event | None = None) -> tuple[Any, list[str]]:
    """`fn()` in a worker thread, cut off after `timeout_s` (or when `cancel` is set): its value
    and the notes it left. Raises what `fn` raised, or ToolTimeout."""
    call = ToolCall(name)
    outcome: dict[str, Any] = {}

    def work() -> None:
        _local.call = call
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=work, name=f"tool-{name}", daemon=True)
    worker.start()
    deadline = time.monotonic() + timeout_s
    while worker.is_alive():
        left = deadline - time.monotonic()
        if left <= 0 or (cancel is not None and cancel.is_set()):
            break
        worker.join(min(left, _POLL_S))
    if worker.is_alive():
        call.stop.set()
        call.model_lock.acquire()  # a call inside the model stops at its next token: wait for that
        call.model_lock.release()
        why = "the run was cancelled" if cancel is not None and cancel.is_set() else \
            f"it ran longer than its {timeout_s:.3g} s limit"
        raise ToolTimeout(f"{name} was cut off: {why}")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"], call.notes


def load_for_tool(path: Path, max_pixels: int, purpose: str) -> tuple[Image.Image, float]:
    """An image of at most `max_pixels` for a tool, with a note when it was resized, and the
    scale from the original (1.0 when unchanged): original = loaded / scale."""
    img, (width, height) = load_image_within(path, max_pixels)
    if img.size == (width, height):
        return img, 1.0
    note(f"resized from {width}x{height} to {img.width}x{img.height} {purpose}")
    return img, img.width / width
