"""Snapshots of the main screens (pytest-textual-snapshot; refresh with --snapshot-update)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot
from tui_helpers import make_app, own_data_dir  # noqa: F401 (own_data_dir: autouse fixture)

from tinymodels import make_test_image
from t3edge.trajectory import Attachment, Step, Task, Trajectory
from tui.app import LIGHT, T3App
from tui.screens.attach import AttachScreen
from tui.screens.models import ModelPickerScreen
from t3edge.chats import ChatStore
from tui.settings import TuiState
from tui.widgets.steps import StepView

SIZE = (100, 36)


def saved_run(image: Path) -> Trajectory:
    return Trajectory(
        task=Task(id="t1", query="How many [b]apples[/b] are in the photo?",
                  attachments=[Attachment(path=str(image), kind="image")]),
        steps=[
            Step(index=0, raw_output="...", thought="I will **count** them with `objectlocation`.",
                 code="boxes = objectlocation(object='apple', image_path='photo.png')\nprint(len(boxes))",
                 observation="3", tools_called=["objectlocation"], tokens_in=812, tokens_out=41, seconds=2.5),
            Step(index=1, kind="parse_error", raw_output="I think there are three apples.",
                 error="no code block found", tokens_in=870, tokens_out=9, seconds=0.7),
            Step(index=2, raw_output="...", thought="Answer.", code="final_answer('3 apples')",
                 tokens_in=930, tokens_out=20, seconds=1.1),
        ],
        final_answer="3 apples", ended="final_answer", model="replay:scripted", backend="replay", seconds=4.3,
    )


@pytest.fixture
def utc() -> Iterator[None]:
    """Local time is UTC for the test (session times are shown in local time)."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, utc: None) -> ChatStore:
    """Two saved chats; paths relative to the test folder and times in UTC, so screens are stable."""
    monkeypatch.chdir(tmp_path)
    image = make_test_image(Path("photo.png"), (56, 56))
    store = ChatStore(tmp_path / "sessions.db")
    for sid, title in (("aaaa", "Apples"), ("bbbb", "Receipt totals")):
        store.db.execute("INSERT INTO sessions VALUES (?, ?, 'replay:scripted', 1.7e9, 1.7e9)", (sid, title))
        store.add_run(sid, saved_run(image))
    store.db.execute("UPDATE sessions SET updated_at = 1.7e9 + rowid")
    store.db.commit()
    return store


def app_with(tmp_path: Path, store: ChatStore, **kwargs: object) -> T3App:
    app = make_app(tmp_path, [], **kwargs)
    app.store = store
    return app


async def steady(pilot: Pilot) -> None:
    """Stop the message box's cursor blinking, so screenshots do not depend on timing."""
    app = pilot.app
    assert isinstance(app, T3App)
    app.chat.prompt.cursor_blink = False
    await pilot.pause()


def test_chat_with_a_reopened_run(snap_compare, tmp_path: Path, store: ChatStore) -> None:  # type: ignore[no-untyped-def]
    async def expand_first(pilot: Pilot) -> None:
        await steady(pilot)
        app = pilot.app
        assert isinstance(app, T3App)
        app.chat.query(StepView).first().collapsed = False
        await pilot.pause()

    assert snap_compare(app_with(tmp_path, store, session_id="aaaa"), terminal_size=SIZE, run_before=expand_first)


def test_chat_in_the_light_theme(snap_compare, tmp_path: Path, store: ChatStore) -> None:  # type: ignore[no-untyped-def]
    TuiState(theme=LIGHT).save()  # remembered from an earlier session

    async def expand_all(pilot: Pilot) -> None:
        await steady(pilot)
        app = pilot.app
        assert isinstance(app, T3App)
        app.action_expand_steps()
        await pilot.pause()

    assert snap_compare(app_with(tmp_path, store, session_id="bbbb"), terminal_size=SIZE, run_before=expand_all)


def test_sessions_screen(snap_compare, tmp_path: Path, store: ChatStore) -> None:  # type: ignore[no-untyped-def]
    async def open_sessions(pilot: Pilot) -> None:
        await steady(pilot)
        await pilot.press("ctrl+o")
        await pilot.pause()

    assert snap_compare(app_with(tmp_path, store), terminal_size=SIZE, run_before=open_sessions)


def test_model_picker(snap_compare, tmp_path: Path, store: ChatStore) -> None:  # type: ignore[no-untyped-def]
    async def open_picker(pilot: Pilot) -> None:
        await steady(pilot)
        app = pilot.app
        screen = ModelPickerScreen("replay:scripted", "gguf")
        await app.push_screen(screen)
        await app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(app_with(tmp_path, store), terminal_size=SIZE, run_before=open_picker)


def test_attachment_picker_with_preview(snap_compare, tmp_path: Path, store: ChatStore) -> None:  # type: ignore[no-untyped-def]
    folder = Path("files")
    folder.mkdir()
    make_test_image(folder / "chart.png", (112, 56))
    (folder / "notes.txt").write_text("hello")

    async def open_picker(pilot: Pilot) -> None:
        await steady(pilot)
        app = pilot.app
        await app.push_screen(AttachScreen(folder))
        await pilot.pause()
        await pilot.press("down")
        await pilot.pause()

    assert snap_compare(app_with(tmp_path, store), terminal_size=SIZE, run_before=open_picker)
