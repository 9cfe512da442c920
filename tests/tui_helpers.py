"""Shared pieces of the terminal-app tests: scripted model outputs and an app factory."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from t3edge.backends.replay import ReplayBackend
from tui.app import T3App
from t3edge.chats import ChatStore
from tui.settings import TuiConfig
from tui.widgets.steps import StepView

LOOK = "Thought: I will print something that looks like [bold]markup[/bold]. " + "Let me think. " * 20 + "\nCode:\n```py\nprint('seen [red]x[/red]')\n```<end_action>"
ANSWER = "Thought: Now I can answer.\nCode:\n```py\nfinal_answer('forty-two')\n```<end_action>"
LONG = "Thought: " + " ".join(f"word{i}" for i in range(400)) + "\nCode:\n```py\nprint(1)\n```<end_action>"
CRASH = "Thought: divide.\nCode:\n```py\nprint(1 / 0)\n```<end_action>"


@pytest.fixture(autouse=True)
def own_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own data folder, so remembered state (theme, last model) never leaks."""
    folder = tmp_path / "data"
    monkeypatch.setenv("T3EDGE_DATA_DIR", str(folder))
    return folder


def make_app(tmp_path: Path, outputs: list[str], *, delay_s: float = 0.0, images: bool = True,
             config: TuiConfig | None = None, **kwargs: object) -> T3App:
    backend = ReplayBackend(outputs, delay_s=delay_s)
    backend.supports_images = images
    store = kwargs.pop("store", None) or ChatStore(tmp_path / "sessions.db")
    return T3App(backend=backend, store=store, config=config or TuiConfig(), **kwargs)  # type: ignore[arg-type]


def first_step(app: T3App) -> StepView:
    """The first step of the current run."""
    return app.chat.steps[min(app.chat.steps)]


async def wait_for(pilot: Pilot, condition: Callable[[], object], limit_s: float = 60.0) -> None:
    """Let the app run until `condition()` holds (fails the test if it never does)."""
    steps = int(limit_s / 0.05)
    for _ in range(steps):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"condition never held: {condition}")


async def send(pilot: Pilot, text: str) -> None:
    app = pilot.app
    assert isinstance(app, T3App)
    app.chat.prompt.focus()
    app.chat.prompt.insert(text)
    await pilot.press("enter")


async def run_to_end(pilot: Pilot, text: str) -> None:
    app = pilot.app
    assert isinstance(app, T3App)
    before = app.chat.runs_ended
    await send(pilot, text)
    await wait_for(pilot, lambda: app.chat.runs_ended > before)
    await pilot.pause()


def pilot_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async pilot test in its own event loop (fixtures pass through)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper
