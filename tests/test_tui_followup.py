"""Follow-ups in the chat: each message continues the chat's conversation, also after reopening a
saved session; a chat that no longer fits the model's context offers a new chat."""

from __future__ import annotations

from pathlib import Path

from tui_helpers import (  # noqa: F401 (own_data_dir: an autouse fixture, imported to apply here)
    ANSWER,
    make_app,
    own_data_dir,
    pilot_test,
    run_to_end,
    send,
    wait_for,
)

from t3edge.agent.config import load_agent_config
from t3edge.backends.base import Message, TextPart
from t3edge.backends.replay import ReplayBackend
from t3edge.conversation import chat_messages
from t3edge.errors import ContextFull
from tui.app import T3App
from tui.screens.dialogs import Confirm
from t3edge.chats import ChatStore
from tui.settings import TuiConfig
from tui.widgets.steps import FinalAnswerView, UserMessage

COUNT = "Thought: Count them.\nCode:\n```py\nprint(3)\n```<end_action>"


@pilot_test
async def test_followups_continue_the_chat_and_a_reopened_session(tmp_path: Path, test_image: Path) -> None:
    app = make_app(tmp_path, [COUNT, ANSWER, ANSWER, ANSWER, ANSWER])
    backend = app.backend
    assert isinstance(backend, ReplayBackend)
    async with app.run_test(size=(100, 40)) as pilot:
        assert app.chat.attach(test_image)
        await run_to_end(pilot, "How many boxes are there?")
        await run_to_end(pilot, "and how many of them are red?")
        sid = app.session_id
        assert sid is not None
        first, second = app.store.runs(sid)
        assert second.continues == [first.task.id]
        # the follow-up's first call is the whole first conversation, then the new task
        before, followup = backend.seen[1], backend.seen[2]
        assert followup[: len(before)] == before
        assert followup[len(before):] == [Message("assistant", ANSWER),
                                          Message("user", [TextPart("Task: and how many of them are red?")])]
        assert followup[1].images  # the image of the first message is still in the conversation
        assert len(app.chat.query(UserMessage)) == 2 and len(app.chat.query(FinalAnswerView)) == 2

        # a new chat starts fresh: the model sees only the new task
        await pilot.press("ctrl+n")
        await pilot.pause()
        await run_to_end(pilot, "something else")
        assert [m.role for m in backend.seen[3]] == ["system", "user"]
        fresh = app.store.runs(app.session_id or "")[0]
        assert app.session_id != sid and not fresh.continues

        # reopening the first chat from the sessions list continues it
        await pilot.press("ctrl+o")
        await pilot.pause()
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: app.session_id == sid and len(app.chat.query(UserMessage)) == 2)
        assert app.chat.status.context_used == second.steps[-1].tokens_in + second.steps[-1].tokens_out
        await run_to_end(pilot, "and blue ones?")
        third = app.store.runs(sid)[-1]
        assert third.continues == [first.task.id, second.task.id]
        assert backend.seen[4][:-1] == chat_messages([first, second])

    # and so does a fresh app started on the saved session (`t3edge chat --session`)
    later = ReplayBackend([ANSWER])
    again = T3App(backend=later, store=ChatStore(tmp_path / "sessions.db"), config=TuiConfig(),
                  session_id=sid)
    async with again.run_test(size=(100, 40)) as pilot:
        await wait_for(pilot, lambda: len(again.chat.query(UserMessage)) == 3)
        await run_to_end(pilot, "and green?")
        runs = again.store.runs(sid)
        assert runs[-1].continues == [r.task.id for r in runs[:-1]]
        assert later.seen[0] == [*chat_messages(runs[:-1]),
                                 Message("user", [TextPart("Task: and green?")])]


@pilot_test
async def test_a_chat_that_no_longer_fits_offers_a_new_chat(tmp_path: Path) -> None:
    app = make_app(tmp_path, [ANSWER, ANSWER])
    backend = app.backend
    assert isinstance(backend, ReplayBackend)
    async with app.run_test(size=(100, 40)) as pilot:
        await run_to_end(pilot, "first question")
        sid = app.session_id
        last = app.store.runs(sid or "")[0].steps[-1]
        backend.context_length = last.tokens_in + last.tokens_out + load_agent_config().generation.max_tokens + 5
        long_message = "tell me more " * 40

        await send(pilot, long_message)
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm))
        assert "cannot go on" in app.screen.question and "context" in app.screen.question
        await pilot.press("n")
        await pilot.pause()
        assert not app.chat.running and backend.calls == 1
        assert app.chat.prompt.text == long_message  # nothing was lost

        app.chat.prompt.clear()
        await send(pilot, long_message)
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm))
        before = app.chat.runs_ended
        await pilot.press("y")
        await wait_for(pilot, lambda: app.chat.runs_ended > before)
        assert app.session_id != sid
        fresh = app.store.runs(app.session_id or "")
        assert len(fresh) == 1 and not fresh[0].continues
        assert [m.role for m in backend.seen[1]] == ["system", "user"]
        assert len(app.chat.query(UserMessage)) == 1


@pilot_test
async def test_a_chat_with_images_cannot_go_on_with_a_text_only_model(tmp_path: Path,
                                                                       test_image: Path) -> None:
    app = make_app(tmp_path, [ANSWER, ANSWER])
    async with app.run_test(size=(100, 40)) as pilot:
        assert app.chat.attach(test_image)
        await run_to_end(pilot, "what is this?")
        app.backend.supports_images = False  # type: ignore[union-attr]
        await send(pilot, "and its colour?")
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm))
        assert "text-only" in app.screen.question
        await pilot.press("y")
        await wait_for(pilot, lambda: app.chat.runs_ended == 2)
        assert not app.store.runs(app.session_id or "")[0].continues


class FullAfterOneRun(ReplayBackend):
    """A model whose context holds one run: a longer conversation is refused, as a real backend does."""

    def stream(self, messages, config):  # type: ignore[no-untyped-def]
        if len(messages) > 3:
            raise ContextFull("the prompt needs 5000 positions, the context holds 4096")
        return super().stream(messages, config)


@pilot_test
async def test_a_followup_the_backend_refuses_offers_a_new_chat(tmp_path: Path,
                                                                 test_image: Path) -> None:
    app = make_app(tmp_path, [])
    backend = FullAfterOneRun([ANSWER, ANSWER])
    app.backend = backend
    async with app.run_test(size=(100, 40)) as pilot:
        await run_to_end(pilot, "first")
        assert app.chat.attach(test_image)
        await run_to_end(pilot, "second, with a picture")
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm))
        assert "5000 positions" in app.screen.question
        refused = app.store.runs(app.session_id or "")[-1]
        assert refused.ended == "context_full" and refused.continues
        await pilot.press("y")
        await wait_for(pilot, lambda: app.chat.runs_ended == 3)
        fresh = app.store.runs(app.session_id or "")
        assert len(fresh) == 1 and fresh[0].task.query == "second, with a picture"
        assert [a.path for a in fresh[0].task.attachments] == [str(test_image.resolve())]
        assert [m.role for m in backend.seen[-1]] == ["system", "user"] and backend.seen[-1][1].images
