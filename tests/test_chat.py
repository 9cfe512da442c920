"""The Chat: the one place a run of the agent is assembled (task, working folder, fresh or
follow-up, saving), used by the command line, the app, evaluation and synthesis."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from t3edge.agent import AgentConfig
from t3edge.backends.replay import ReplayBackend
from t3edge.chat import Chat, new_task
from t3edge.chats import ChatStore
from t3edge.errors import BadInput
from t3edge.protocol import format_step

ROOT = Path(__file__).resolve().parents[1]


def answer(text: str) -> str:
    return format_step("Answer.", f"print('noted')\nfinal_answer({text!r})")


def test_runs_are_saved_and_a_second_one_continues_the_first(tmp_path: Path) -> None:
    store = ChatStore(tmp_path / "chats.db")
    config = AgentConfig(workspace=tmp_path / "work")
    chat = Chat(ReplayBackend([answer("one"), answer("two")]), config=config, store=store)
    first = chat.run_to_end(new_task("How many?"))
    second = chat.run_to_end(new_task("And then?"))
    assert chat.chat_id is not None and [t.task.id for t in store.runs(chat.chat_id)] == [first.task.id, second.task.id]
    assert second.continues == [first.task.id] and second.workspace == first.workspace
    assert store.get(chat.chat_id).title == "How many?"


def test_a_fresh_run_starts_in_an_empty_folder_and_a_given_folder_is_never_emptied(tmp_path: Path) -> None:
    config = AgentConfig(workspace=tmp_path / "work")
    task = new_task("Again?", task_id="item-1")
    leftover = tmp_path / "work" / "item-1" / "half-written.csv"  # an interrupted attempt's file
    leftover.parent.mkdir(parents=True)
    leftover.write_text("x")
    traj = Chat(ReplayBackend([answer("yes")]), config=config).run_to_end(task)
    assert traj.workspace == str(leftover.parent) and not leftover.exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    Chat(ReplayBackend([answer("yes")]), workspace=mine).run_to_end(new_task("Here?", task_id="item-1"))
    assert (mine / "keep.txt").read_text() == "mine"


def test_resume_continues_with_attachments_read_back_from_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T3EDGE_DATA_DIR", str(tmp_path / "data"))
    notes = tmp_path / "notes.txt"
    notes.write_text("apples: 3\n")
    store = ChatStore(tmp_path / "chats.db")
    chat = Chat(ReplayBackend([answer("3")]), config=AgentConfig(workspace=tmp_path / "work"), store=store)
    first = chat.run_to_end(new_task("How many apples?", [notes]))
    notes.unlink()  # the file has gone since; the store kept its bytes
    code = "print(open('notes.txt').read().strip())\nfinal_answer('still 3')"
    resumed = Chat.resume(ReplayBackend([format_step("Read it again.", code)]), store, "last",
                          config=AgentConfig(workspace=tmp_path / "work"))
    assert resumed.chat_id == chat.chat_id and [t.task.id for t in resumed.history] == [first.task.id]
    restored = Path(resumed.history[0].task.attachments[0].path)
    assert restored != notes and restored.read_text() == "apples: 3\n"
    second = resumed.run_to_end(new_task("Check again"))
    assert second.final_answer == "still 3" and (second.steps[0].observation or "").strip() == "apples: 3"


def test_a_text_only_model_cannot_continue_a_chat_that_showed_images(tmp_path: Path, test_image: Path) -> None:
    config = AgentConfig(workspace=tmp_path / "work")
    seen = Chat(ReplayBackend([answer("a cat")]), config=config).run_to_end(new_task("What is it?", [test_image]))
    text_only = ReplayBackend([answer("no")])
    text_only.supports_images = False
    problem = Chat(text_only, config=config, history=[seen]).problem(new_task("And now?"))
    assert problem is not None and "text-only model and the chat showed images" in problem


def test_a_task_is_checked_before_any_model_work(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(BadInput, match="cannot read image"):
        new_task("What is it?", [tmp_path / "broken.png"])
    with pytest.raises(BadInput, match="the task is empty"):
        new_task("   ")


def test_only_the_chat_runs_an_agent() -> None:
    """No command, screen, evaluation or synthesis stage assembles a run of its own."""
    sources = [p for wing in ("t3edge", "tui", "synth", "converters") for p in (ROOT / wing).rglob("*.py")
               if p.parent.name != "agent" and p.name != "chat.py"]
    runners = [str(p.relative_to(ROOT)) for p in sources
               if re.search(r"\bagent\.run(_to_end)?\(", p.read_text(encoding="utf-8"))]
    assert runners == [], runners
