"""The chat store: full trajectories, attachments once by hash, migrations, corruption."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from t3edge.errors import T3Error
from t3edge.trajectory import Attachment, Step, Task, Trajectory, read_trajectories
from t3edge.chats import MIGRATIONS, SCHEMA_VERSION, ChatStore, trajectory_markdown


def make_traj(query: str, files: list[Path] = (), *, answer: str = "42") -> Trajectory:
    return Trajectory(
        task=Task(id=query[:8], query=query, attachments=[Attachment.from_path(f) for f in files]),
        steps=[
            Step(index=1, raw_output="Thought: look\nCode:\n```py\nprint(1)\n```", thought="look",
                 code="print(1)", observation="1", tokens_in=30, tokens_out=9, tools_called=["ocr"]),
            Step(index=2, kind="parse_error", raw_output="no code here", error="no code block"),
            Step(index=3, raw_output="x", thought="answer", code="final_answer('42')", produced_files=["/tmp/p.png"]),
        ],
        final_answer=answer, ended="final_answer", model="replay:test", backend="replay",
    )


def test_runs_round_trip_with_every_step(tmp_path: Path, test_image: Path) -> None:
    store = ChatStore(tmp_path / "s.db")
    sid = store.create("first", model="m")
    traj = make_traj("what is this?", [test_image])
    store.add_run(sid, traj)
    store.add_run(sid, make_traj("and again?", [test_image]))
    runs = store.runs(sid)
    assert runs[0] == traj
    assert [s.kind for s in runs[0].steps] == ["action", "parse_error", "action"]
    assert store.blob_count() == 1  # the same image twice is stored once
    info = store.get(sid)
    assert (info.title, info.runs, info.model) == ("first", 2, "replay:test")


def test_list_rename_delete(tmp_path: Path, test_image: Path) -> None:
    store = ChatStore(tmp_path / "s.db")
    a = store.create("a")
    b = store.create("b")
    store.add_run(a, make_traj("q", [test_image]))
    assert [s.id for s in store.list()] == [a, b]  # most recently used first
    store.rename(b, "  renamed ")
    assert store.get(b).title == "renamed"
    with pytest.raises(T3Error):
        store.rename(b, "  ")
    store.delete(a)
    assert [s.id for s in store.list()] == [b]
    assert store.blob_count() == 0  # the attachment nobody refers to any more is gone
    with pytest.raises(T3Error, match="no session"):
        store.get(a)


def test_exports(tmp_path: Path, test_image: Path) -> None:
    store = ChatStore(tmp_path / "s.db")
    sid = store.create("Receipts")
    trajs = [make_traj("sum the receipt", [test_image]), make_traj("second")]
    for t in trajs:
        store.add_run(sid, t)
    jsonl = store.export_jsonl(sid, tmp_path / "out" / "s.jsonl")
    assert list(read_trajectories(jsonl)) == trajs
    md = store.export_markdown(sid, tmp_path / "out" / "s.md").read_text()
    assert md.startswith("# Receipts")
    assert "## sum the receipt" in md and "```py\nprint(1)\n```" in md
    assert "**Answer:** 42" in md and "no code block" in md and str(test_image) in md


def test_markdown_fence_survives_backticks_in_output() -> None:
    traj = make_traj("q")
    traj.steps[0].observation = "```\ninner\n```"
    md = trajectory_markdown(traj)
    assert "````\n```\ninner\n```\n````" in md


def test_restore_file_after_original_is_gone(tmp_path: Path, test_image: Path) -> None:
    src = tmp_path / "photo.png"
    src.write_bytes(test_image.read_bytes())
    store = ChatStore(tmp_path / "s.db")
    sid = store.create("x")
    traj = make_traj("q", [src])
    store.add_run(sid, traj)
    src.unlink()
    restored = store.restore_file(traj.task.attachments[0].sha256 or "", str(src), tmp_path / "files")
    assert restored.read_bytes() == test_image.read_bytes() and restored.name == "photo.png"


def test_migrates_a_version_1_database(tmp_path: Path, test_image: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    MIGRATIONS[0](db)
    db.execute("PRAGMA user_version = 1")
    traj = make_traj("old run", [test_image])
    db.execute("INSERT INTO sessions VALUES ('s1', 'old', 'm', 1.0, 1.0)")
    db.execute("INSERT INTO runs (session_id, trajectory, created_at) VALUES ('s1', ?, 1.0)",
               (traj.model_dump_json(),))
    db.commit()
    db.close()
    store = ChatStore(path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert store.runs("s1") == [traj]
    assert store.blob_count() == 1  # the old run's attachment was stored by the migration
    assert [h.chat_id for h in store.search("old run")] == ["s1"]  # and its text indexed for search


def test_corrupt_database_is_set_aside_not_deleted(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    garbage = b"this is not an sqlite database" * 100
    path.write_bytes(garbage)
    store = ChatStore(path)
    assert store.set_aside is not None and store.set_aside.read_bytes() == garbage
    assert "corrupt" in store.set_aside.name
    sid = store.create("fresh")
    assert store.get(sid).title == "fresh"


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(T3Error, match="newer"):
        ChatStore(path)
    assert path.exists()


def test_threads_that_saved_runs_leave_no_open_files_behind(tmp_path: Path) -> None:
    """The app and the server save each run from the thread that ran it: one connection per
    thread, closed once the thread has ended."""
    store = ChatStore(tmp_path / "chats.db")
    sid = store.create("many runs")
    traj = Trajectory(task=Task(id="t", query="q"))

    def save_in_thread() -> None:
        thread = threading.Thread(target=store.add_run, args=(sid, traj))
        thread.start()
        thread.join()

    def open_files() -> int:
        return len(os.listdir("/proc/self/fd"))

    save_in_thread()
    before = open_files()
    for _ in range(30):
        save_in_thread()
    assert open_files() <= before + 2 and len(store.runs(sid)) == 31
    store.close()
