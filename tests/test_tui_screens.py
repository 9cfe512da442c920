"""Pickers, the sessions screen, produced images, a damaged database, and the `chat` command."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from textual.widgets import Input
from tui_helpers import ANSWER, make_app, own_data_dir, pilot_test, run_to_end, wait_for  # noqa: F401

from t3edge.cli import cli
from tui.app import T3App
from tui.screens.attach import AttachScreen
from tui.screens.dialogs import AskText
from tui.screens.models import ModelPickerScreen
from tui.screens.sessions import SessionsScreen
from t3edge.chats import ChatStore
from tui.settings import TuiConfig
from tui.widgets.steps import StepView

DRAW = ("Thought: draw it.\nCode:\n```py\nfrom PIL import Image\nImage.new('RGB', (56, 56), 'red').save('red.png')\n"
        "print('saved red.png')\n```<end_action>")


@pilot_test
async def test_attach_picker_and_model_picker(tmp_path: Path, test_image: Path) -> None:
    script = tmp_path / "script.txt"
    script.write_text(ANSWER)
    app = make_app(tmp_path, [])
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("ctrl+t")
        assert isinstance(app.screen, AttachScreen)
        app.screen.query_one("#path", Input).value = str(test_image)
        app.screen.query_one("#path", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert app.chat.attachments.paths == [test_image.resolve()]

        await pilot.press("ctrl+l")
        assert isinstance(app.screen, ModelPickerScreen)
        app.screen.query_one("#path", Input).value = f"replay:{script}"
        app.screen.query_one("#path", Input).focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.backend is not None and app.backend.model_id == f"replay:{script}")
        assert app.chat.status.model == f"replay:{script}" and app.chat.status.state == "ready"
        await run_to_end(pilot, "answer from the file's script")
        assert app.store.runs(app.session_id or "")[0].model == f"replay:{script}"


@pilot_test
async def test_sessions_rename_and_delete(tmp_path: Path) -> None:
    app = make_app(tmp_path, [ANSWER, ANSWER])
    async with app.run_test(size=(100, 40)) as pilot:
        await run_to_end(pilot, "first chat")
        first = app.session_id
        await pilot.press("ctrl+n")
        await run_to_end(pilot, "second chat")
        second = app.session_id
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, SessionsScreen)
        await pilot.press("r")
        assert isinstance(app.screen, AskText)
        app.screen.query_one(Input).value = "Renamed chat"
        await pilot.press("enter")
        await pilot.pause()
        assert [s.title for s in app.store.list()] == ["Renamed chat", "first chat"]
        await pilot.press("down", "d", "y")
        await pilot.pause()
        assert [(s.id, s.title) for s in app.store.list()] == [(second, "Renamed chat")]
        assert first != second


@pilot_test
async def test_produced_image_is_previewed(tmp_path: Path) -> None:
    app = make_app(tmp_path, [DRAW, ANSWER])
    async with app.run_test(size=(100, 40)) as pilot:
        await run_to_end(pilot, "draw a red square")
        step = app.chat.query(StepView).first()
        assert step.step is not None and step.step.produced_files
        assert Path(step.step.produced_files[0]).name == "red.png"
        assert step.query(".image-box")  # drawn (as characters when the terminal has no graphics)


@pilot_test
async def test_damaged_database_is_reported_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    path.write_bytes(b"\x00garbage" * 500)
    app = T3App(model="replay:missing.txt", store=ChatStore(path), config=TuiConfig())
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        messages = [str(n.message) for n in app._notifications]
        assert any("could not be read" in m and "corrupt" in m for m in messages)
    aside = list(tmp_path.glob("sessions.corrupt-*.db"))
    assert len(aside) == 1 and aside[0].read_bytes() == b"\x00garbage" * 500


def test_chat_command_rejects_an_unknown_session() -> None:
    result = CliRunner().invoke(cli, ["chat", "--session", "nope"])
    assert result.exit_code == 1
    assert "no session 'nope'" in result.output


@pilot_test
async def test_sessions_search_finds_a_chat_by_a_word_of_its_steps(tmp_path: Path) -> None:
    from tui.screens.sessions import SessionsScreen

    looked = "Thought: look.\nCode:\n```py\nprint('a zebra crossing')\n```<end_action>"
    app = make_app(tmp_path, [looked, ANSWER, ANSWER])
    async with app.run_test(size=(120, 40)) as pilot:
        await run_to_end(pilot, "first chat")
        zebra = app.session_id
        await pilot.press("ctrl+n")
        await run_to_end(pilot, "second chat")
        await pilot.press("ctrl+o")
        screen = app.screen
        assert isinstance(screen, SessionsScreen)
        await pilot.press("slash")
        app.screen.query_one(Input).value = "zebra"
        await pilot.press("enter")
        await pilot.pause()
        table = screen.query_one("#sessions")
        assert table.row_count == 1 and screen.selected == zebra
        assert "[zebra]" in str(table.get_cell_at((0, 5)))
        await pilot.press("slash")
        app.screen.query_one(Input).value = ""
        await pilot.press("enter")
        await pilot.pause()
        assert table.row_count == 2
