"""One chat store for the command line and the app: `t3edge run --continue` continues a chat started
on the command line or in the app, the app opens a chat started on the command line, `t3edge logs`
lists, searches and exports them, and two processes writing at once lose nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tui_helpers import make_app, pilot_test, send, wait_for

from t3edge.chats import ChatStore
from t3edge.trajectory import read_trajectories

SCRIPT = 'Thought: done.\nCode:\n```py\nprint("purring loudly")\nfinal_answer("three cats")\n```<end_action>\n'


@pytest.fixture()
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data folder of this test's own (so its chat store holds only this test's chats)."""
    folder = tmp_path / "data"
    monkeypatch.setenv("T3EDGE_DATA_DIR", str(folder))
    (tmp_path / "script.txt").write_text(SCRIPT)
    return folder


def t3(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["t3edge", *args], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env=dict(os.environ))


def test_follow_ups_continue_the_chat_in_its_workspace(tmp_path: Path, data: Path) -> None:
    first = t3("run", "How many cats?", "--model", "replay:script.txt", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "trajectory saved to" in first.stdout and "t3edge run --continue" in first.stdout
    second = t3("run", "And how many are red?", "--model", "replay:script.txt", "--out", "runs.jsonl",
                "--continue", "last", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    store = ChatStore(data / "chats.db")
    (chat,) = store.list()
    a, b = store.runs(chat.id)
    assert chat.title == "How many cats?" and b.continues == [a.task.id]
    assert b.workspace == a.workspace and b.system_prompt == a.system_prompt
    assert [t.task.id for t in read_trajectories(tmp_path / "runs.jsonl")] == [b.task.id]  # --out: a copy
    third = t3("run", "And blue?", "--model", "replay:script.txt", "--continue", a.task.id, cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert store.runs(chat.id)[-1].continues == [a.task.id, b.task.id]


def test_continuing_an_unknown_chat_is_one_clear_line(tmp_path: Path, data: Path) -> None:
    missing = t3("run", "x", "--model", "replay:script.txt", "--continue", "last", cwd=tmp_path)
    assert missing.returncode == 1 and missing.stderr.strip() == (
        "error: there is no chat to continue yet (run a task first)")
    t3("run", "q", "--model", "replay:script.txt", cwd=tmp_path)
    wrong = t3("run", "x", "--model", "replay:script.txt", "--continue", "nope", cwd=tmp_path)
    assert wrong.returncode == 1 and wrong.stderr.strip() == (
        f"error: no chat or run 'nope' in {data / 'chats.db'} "
        "(list the chats with `t3edge logs list`, or use --continue last)")


@pilot_test
async def test_the_app_continues_a_chat_of_the_command_line(tmp_path: Path, data: Path) -> None:
    assert t3("run", "How many cats?", "--model", "replay:script.txt", cwd=tmp_path).returncode == 0
    store = ChatStore(data / "chats.db")
    (chat,) = store.list()
    app = make_app(tmp_path, [SCRIPT], store=store, session_id=chat.id)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_for(pilot, lambda: len(app.chat.history) == 1)
        await send(pilot, "And how many are red?")
        await wait_for(pilot, lambda: len(store.runs(chat.id)) == 2)
    first, second = ChatStore(data / "chats.db").runs(chat.id)  # the app closed its connection
    assert second.continues == [first.task.id] and second.task.query == "And how many are red?"


@pilot_test
async def test_the_command_line_continues_a_chat_of_the_app(tmp_path: Path, data: Path) -> None:
    store = ChatStore(data / "chats.db")
    app = make_app(tmp_path, [SCRIPT], store=store)
    async with app.run_test(size=(100, 40)) as pilot:
        await send(pilot, "How many cats?")
        await wait_for(pilot, lambda: app.session_id is not None and store.runs(app.session_id))
    chat_id = app.session_id
    assert chat_id is not None
    follow = t3("run", "And red ones?", "--model", "replay:script.txt", "--continue", chat_id, cwd=tmp_path)
    assert follow.returncode == 0, follow.stderr
    first, second = ChatStore(data / "chats.db").runs(chat_id)
    assert second.continues == [first.task.id]


def test_logs_list_show_search_and_export_round_trip(tmp_path: Path, data: Path) -> None:
    assert t3("run", "How many cats?", "--model", "replay:script.txt", cwd=tmp_path).returncode == 0
    (chat,) = ChatStore(data / "chats.db").list()
    listed = t3("logs", "list", cwd=tmp_path)
    assert chat.id in listed.stdout and "How many cats?" in listed.stdout
    found = t3("logs", "search", "purring", cwd=tmp_path)  # a word of a step's observation
    assert found.returncode == 0 and chat.id in found.stdout and "[purring]" in found.stdout
    assert t3("logs", "search", "purr*", cwd=tmp_path).stdout.count(chat.id) == 1
    assert t3("logs", "search", "dogs", cwd=tmp_path).stdout.strip() == "no run matches"
    assert "three cats" in t3("logs", "show", "last", cwd=tmp_path).stdout
    exported = t3("logs", "export", chat.id, "--format", "jsonl", "--out", "chat.jsonl", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    (traj,) = read_trajectories(tmp_path / "chat.jsonl")
    assert traj == ChatStore(data / "chats.db").runs(chat.id)[0]
    assert t3("logs", "export", "last", "--out", "chat.md", cwd=tmp_path).returncode == 0
    assert "### Step 0" in (tmp_path / "chat.md").read_text()


WRITER = """
import sys
from t3edge.chats import ChatStore
from t3edge.trajectory import Task, Trajectory
store = ChatStore(sys.argv[1])
for i in range(int(sys.argv[3])):
    chat = store.create(f"{sys.argv[2]} {i}")
    store.add_run(chat, Trajectory(task=Task(id=f"{sys.argv[2]}-{i}", query="q"), final_answer=i))
"""


def test_two_processes_writing_the_store_at_once_lose_no_run(tmp_path: Path) -> None:
    path = tmp_path / "chats.db"
    ChatStore(path).close()
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, "40"]) for name in ("a", "b")]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    store = ChatStore(path)
    ids = sorted(t.task.id for c in store.list() for t in store.runs(c.id))
    assert ids == sorted(f"{n}-{i}" for n in ("a", "b") for i in range(40))
