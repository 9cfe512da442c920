"""The chat, driven through Textual's pilot with the scripted backend and the real agent."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual import events
from textual.widgets import Markdown
from tui_helpers import (  # noqa: F401 (own_data_dir: an autouse fixture, imported to apply here)
    ANSWER,
    CRASH,
    LONG,
    LOOK,
    first_step,
    make_app,
    own_data_dir,
    pilot_test,
    run_to_end,
    send,
    wait_for,
)

from t3edge.backends.replay import ReplayBackend
from tui.app import LIGHT, T3App
from t3edge.chats import ChatStore
from tui.settings import TuiConfig, TuiState
from tui.widgets.attachments import Chip
from tui.widgets.steps import CodeBlock, FinalAnswerView, Notice, StepView, UserMessage


@pilot_test
async def test_full_chat_streams_collapses_saves_and_reopens(tmp_path: Path) -> None:
    app = make_app(tmp_path, [LOOK, ANSWER], delay_s=0.05)
    async with app.run_test(size=(100, 40)) as pilot:
        await send(pilot, "What is in the box?")
        # the first step appears while the model is still writing it
        await wait_for(pilot, lambda: app.chat.steps and first_step(app).streamed_text)
        assert app.chat.running and first_step(app).step is None
        await wait_for(pilot, lambda: not app.chat.running)
        await pilot.pause()

        views = list(app.chat.query(StepView))
        assert [v.index for v in views] == [0, 1]
        assert all(v.collapsed for v in views)  # finished steps fold away
        first = views[0]
        await pilot.click(first.query_one("CollapsibleTitle"))
        assert not first.collapsed
        code = first.query_one(CodeBlock)
        assert code.copy_text == "print('seen [red]x[/red]')"
        observation = first.query_one(".observation")
        assert str(observation.render()).strip() == "seen [red]x[/red]"  # output is never markup
        assert "[bold]markup[/bold]" in first.query_one(Markdown).source
        assert app.chat.query_one(FinalAnswerView).copy_text == "forty-two"
        assert "Done." in str(list(app.chat.query(Notice))[-1].render())

        # saved with every step, and reopened in a fresh chat exactly as it ran
        sid = app.session_id
        assert sid is not None
        saved = app.store.runs(sid)
        assert len(saved) == 1 and len(saved[0].steps) == 2 and saved[0].final_answer == "forty-two"
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert not app.chat.query(StepView)
        await pilot.press("ctrl+o")
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(app.chat.query(StepView)) == 2)
        reopened = list(app.chat.query(StepView))
        assert [v.step for v in reopened] == saved[0].steps
        assert app.chat.query_one(UserMessage).copy_text == "What is in the box?"

        # export from the sessions screen
        await pilot.press("ctrl+o")
        await pilot.pause()
        await pilot.press("m", "j", "escape")
        exported = app.export_dir
        assert (exported / f"{sid}.md").read_text().count("### Step") == 2
        assert (exported / f"{sid}.jsonl").read_text().count("\n") == 1


@pilot_test
async def test_cancel_mid_generation_then_keep_chatting(tmp_path: Path) -> None:
    app = make_app(tmp_path, [LONG, ANSWER], delay_s=0.02)
    async with app.run_test(size=(100, 40)) as pilot:
        await send(pilot, "long one")
        await wait_for(pilot, lambda: app.chat.steps and first_step(app).streamed_text)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.chat.running)
        await pilot.pause()
        saved = app.store.runs(app.session_id or "")
        assert saved[0].ended == "cancelled"
        assert len(first_step(app).streamed_text.split()) < 400  # stopped before the end
        assert "Cancelled" in str(list(app.chat.query(Notice))[-1].render())
        # the app and the backend are still usable
        await run_to_end(pilot, "now answer")
        assert app.chat.query(FinalAnswerView).last().copy_text == "forty-two"


@pilot_test
async def test_attachments_added_pasted_removed_and_sent(tmp_path: Path, test_image: Path) -> None:
    doc = tmp_path / "my notes.txt"
    doc.write_text("hello")
    app = make_app(tmp_path, [ANSWER])
    async with app.run_test(size=(100, 40)) as pilot:
        assert app.chat.attach(test_image)
        app.post_message(events.Paste(f"'{doc}'"))  # a dropped file arrives as a paste
        await pilot.pause()
        assert app.chat.attachments.paths == [test_image.resolve(), doc.resolve()]
        assert app.chat.prompt.text == ""
        chip = next(c for c in app.chat.query(Chip) if c.path == doc.resolve())
        await pilot.click(chip)
        await pilot.pause()
        assert app.chat.attachments.paths == [test_image.resolve()]
        app.post_message(events.Paste("just text, not a path"))
        await pilot.pause()
        assert app.chat.prompt.text == "just text, not a path"
        app.chat.prompt.clear()
        await run_to_end(pilot, "describe it")
        assert not app.chat.query(Chip)
        saved = app.store.runs(app.session_id or "")[0]
        assert [a.path for a in saved.task.attachments] == [str(test_image.resolve())]
        assert app.store.blob_count() == 1


@pilot_test
async def test_a_text_only_model_gets_images_by_path(tmp_path: Path, test_image: Path) -> None:
    app = make_app(tmp_path, [ANSWER], images=False)
    async with app.run_test(size=(100, 40)) as pilot:
        assert app.chat.attach(test_image)
        await pilot.pause()
        assert app.chat.attachments.paths == [test_image]
        assert any("text-only" in str(n.message) and "tools" in str(n.message) for n in app._notifications)
        await run_to_end(pilot, "What does the picture say?")
        saved = app.store.runs(app.session_id or "")[0]
        assert saved.ended == "final_answer" and not saved.images_shown
        assert "You cannot see images" in (saved.task_message or "")


@pilot_test
async def test_tool_error_and_crashing_backend_keep_the_app_usable(tmp_path: Path) -> None:
    app = make_app(tmp_path, [CRASH, ANSWER])
    async with app.run_test(size=(100, 40)) as pilot:
        await run_to_end(pilot, "divide")
        failed = first_step(app)
        assert "failed" in failed.classes and "ZeroDivisionError" in (failed.step.error or "")
        assert app.chat.query(FinalAnswerView).last().copy_text == "forty-two"

        class Broken(ReplayBackend):
            def stream(self, messages, config):  # type: ignore[no-untyped-def]
                raise RuntimeError("the model exploded")
                yield

        app.backend = Broken(["unused"])
        await run_to_end(pilot, "again")
        last = list(app.chat.query(Notice))[-1]
        assert "error" in last.classes and "exploded" in str(last.render())
        app.backend = ReplayBackend([ANSWER])
        await run_to_end(pilot, "and once more")
        assert app.chat.query(FinalAnswerView).last().copy_text == "forty-two"


@pilot_test
async def test_unknown_model_is_reported_and_app_stays_up(tmp_path: Path) -> None:
    app = T3App(model="no-such-model", store=ChatStore(tmp_path / "s.db"), config=TuiConfig())
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_for(pilot, lambda: app.chat.query(Notice))
        assert "unknown model" in str(app.chat.query_one(Notice).render())
        assert app.chat.status.state == "no model"
        await send(pilot, "hello?")
        await pilot.pause()
        assert not app.chat.running


@pilot_test
async def test_keys_newline_copy_theme_and_keymap(tmp_path: Path) -> None:
    config = TuiConfig(keymap={"prompt.newline": "ctrl+b"})
    app = make_app(tmp_path, [LOOK, ANSWER], config=config)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("a", "ctrl+b", "b")
        assert app.chat.prompt.text == "a\nb"
        app.chat.prompt.clear()
        await run_to_end(pilot, "go")
        app.action_expand_steps()
        await pilot.pause()
        app.chat.query(CodeBlock).first().focus()
        await pilot.press("y")
        assert app.clipboard == "print('seen [red]x[/red]')"
        await pilot.press("f8")
        assert app.theme == LIGHT
    assert TuiState.load().theme == LIGHT
    again = make_app(tmp_path, [])
    async with again.run_test() as pilot:
        assert again.theme == LIGHT


@pilot_test
async def test_context_use_is_shown_and_warned(tmp_path: Path) -> None:
    app = make_app(tmp_path, [LOOK, ANSWER])
    app.backend.context_length = 10  # type: ignore[union-attr]
    async with app.run_test(size=(100, 40)) as pilot:
        assert app.chat.status.context_size == 10
        await run_to_end(pilot, "fill the context")
        assert app.chat.status.context_used > 0
        assert app.chat.status.near_limit and "warn" in app.chat.status.classes
        assert any("context tokens" in str(n.message) for n in app._notifications)


@pytest.mark.slow
@pilot_test
async def test_chat_on_the_tiny_mlx_model(tmp_path: Path, tiny_qwen2_vl: Path, test_image: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    user_config = tmp_path / "config"
    user_config.mkdir()
    (user_config / "agent.toml").write_text("max_steps = 1\n[generation]\nmax_tokens = 16\n")
    monkeypatch.setenv("T3EDGE_CONFIG_DIR", str(user_config))
    app = T3App(model=str(tiny_qwen2_vl), store=ChatStore(tmp_path / "s.db"), config=TuiConfig())
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_for(pilot, lambda: app.backend is not None, limit_s=120)
        assert app.chat.status.backend == "mlx" and app.chat.status.context_size
        assert app.chat.attach(test_image)
        await run_to_end(pilot, "What is in the picture?")
        saved = app.store.runs(app.session_id or "")[0]
        assert saved.backend == "mlx" and saved.steps and saved.steps[0].tokens_in > 64  # 64 image tokens
        assert len(app.chat.query(StepView)) == len(saved.steps)
        assert app.chat.status.context_used == saved.steps[-1].tokens_in + saved.steps[-1].tokens_out
