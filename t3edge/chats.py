"""The chat store: one SQLite file in the data folder holding every chat of the command line and
the terminal app, each run's full Trajectory, attachments stored once by content hash.

A session is an ordered list of agent runs (one per message sent), each continuing the runs before
it (`Trajectory.continues`; `t3edge.conversation.chat_chain` gives a run's chat). The
database carries a schema version (`PRAGMA user_version`) and is migrated forward on open. A
database that cannot be read is renamed aside (never deleted) and a fresh one is started;
`ChatStore.set_aside` says where it went.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from t3edge.errors import T3Error
from t3edge.jsonl import JsonlWriter
from t3edge.trajectory import Trajectory


def _v1(db: sqlite3.Connection) -> None:
    db.executescript(
        """
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY, title TEXT NOT NULL, model TEXT,
            created_at REAL NOT NULL, updated_at REAL NOT NULL
        );
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            trajectory TEXT NOT NULL, created_at REAL NOT NULL
        );
        CREATE INDEX runs_by_session ON runs(session_id, id);
        """
    )


def _v2(db: sqlite3.Connection) -> None:
    """Attachments by content hash; files of runs saved before this version are stored if they still exist."""
    db.executescript(
        """
        CREATE TABLE blobs (sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL, data BLOB NOT NULL);
        CREATE TABLE run_files (
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            sha256 TEXT NOT NULL REFERENCES blobs(sha256), path TEXT NOT NULL,
            PRIMARY KEY (run_id, sha256, path)
        );
        """
    )
    for run_id, text in db.execute("SELECT id, trajectory FROM runs").fetchall():
        traj = Trajectory.model_validate_json(text)
        _store_files(db, run_id, traj)


def _v3(db: sqlite3.Connection) -> None:
    """Full-text search over each run: the question, thoughts, code, observations, errors, answer."""
    db.execute("CREATE VIRTUAL TABLE run_text USING fts5(text, tokenize = 'unicode61')")
    for run_id, text in db.execute("SELECT id, trajectory FROM runs").fetchall():
        db.execute("INSERT INTO run_text (rowid, text) VALUES (?, ?)",
                   (run_id, searchable_text(Trajectory.model_validate_json(text))))


# Each entry upgrades the schema by one version; index i takes version i to i + 1.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1, _v2, _v3]
SCHEMA_VERSION = len(MIGRATIONS)


MAX_STORED_BYTES = 64 << 20  # larger attachments are kept by path only
BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another process's write to finish


def _store_files(db: sqlite3.Connection, run_id: int, traj: Trajectory) -> None:
    from t3edge.trajectory import sha256_file

    for att in traj.task.attachments:
        path = Path(att.path)
        if not path.is_file() or path.stat().st_size > MAX_STORED_BYTES:
            continue
        sha = att.sha256 or sha256_file(path)
        if db.execute("SELECT 1 FROM blobs WHERE sha256 = ?", (sha,)).fetchone() is None:
            data = path.read_bytes()
            db.execute("INSERT INTO blobs VALUES (?, ?, ?)", (sha, len(data), data))
        db.execute("INSERT OR IGNORE INTO run_files VALUES (?, ?, ?)", (run_id, sha, att.path))


def searchable_text(traj: Trajectory) -> str:
    """What a search looks at in a run."""
    parts = [traj.task.query]
    for step in traj.steps:
        parts += [p for p in (step.thought, step.code, step.observation, step.error) if p]
    if traj.final_answer is not None:
        parts.append(str(traj.final_answer))
    return "\n".join(parts)


@dataclass
class SearchHit:
    """A run that matched a search, with the matching words marked in `snippet` (between [ ])."""

    chat_id: str
    title: str
    task_id: str
    snippet: str


@dataclass
class ChatInfo:
    id: str
    title: str
    model: str | None
    created_at: float
    updated_at: float
    runs: int


class ChatStore:
    """The chats database. One connection per thread; several processes may write at once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.set_aside: Path | None = None
        self._local = threading.local()
        self._connections: dict[threading.Thread, sqlite3.Connection] = {}
        self._lock = threading.Lock()
        try:
            self._local.db = self._open()
        except sqlite3.DatabaseError as exc:
            self.set_aside = self._move_aside(exc)
            self._local.db = self._open()

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection (a chat runs in a worker thread and saves from there)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
        return db

    def _connect(self) -> sqlite3.Connection:
        """A connection for this thread; those of threads that have ended are closed (a worker
        thread per run must not leave a file descriptor behind each time)."""
        # each connection is used by its own thread only, so any thread may close it
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
        db.execute("PRAGMA foreign_keys = ON")
        with self._lock:
            for thread in [t for t in self._connections if not t.is_alive()]:
                self._connections.pop(thread).close()
            self._connections[threading.current_thread()] = db
        return db

    def _open(self) -> sqlite3.Connection:
        db = self._connect()
        try:
            db.execute("PRAGMA journal_mode = WAL")  # readers never wait; writers queue (two terminals)
            check = db.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {check}")
            self._migrate(db)
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            db.close()
            raise T3Error(
                f"the sessions database has schema version {version}, newer than this t3edge knows ({SCHEMA_VERSION})",
                hint="upgrade t3edge, or set T3EDGE_DATA_DIR to use another data folder",
            )
        for target in range(version, SCHEMA_VERSION):
            with db:
                MIGRATIONS[target](db)
                db.execute(f"PRAGMA user_version = {target + 1}")

    def _move_aside(self, exc: Exception) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{self.path.stem}.corrupt-{stamp}{self.path.suffix}")
        n = 1
        while aside.exists():
            aside = self.path.with_name(f"{self.path.stem}.corrupt-{stamp}-{n}{self.path.suffix}")
            n += 1
        self.path.rename(aside)
        for suffix in ("-wal", "-shm", "-journal"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                side.rename(aside.with_name(aside.name + suffix))
        return aside

    def close(self) -> None:
        with self._lock:
            for db in self._connections.values():
                db.close()
            self._connections.clear()

    # -- sessions --------------------------------------------------------------------------------

    def create(self, title: str = "New chat", model: str | None = None) -> str:
        sid = uuid.uuid4().hex[:12]
        now = time.time()
        with self.db:
            self.db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)", (sid, title, model, now, now))
        return sid

    def list(self) -> list[ChatInfo]:
        """Sessions, most recently used first."""
        rows = self.db.execute(
            """SELECT s.id, s.title, s.model, s.created_at, s.updated_at, COUNT(r.id)
               FROM sessions s LEFT JOIN runs r ON r.session_id = s.id
               GROUP BY s.id ORDER BY s.updated_at DESC, s.rowid DESC"""
        ).fetchall()
        return [ChatInfo(*row) for row in rows]

    def get(self, session_id: str) -> ChatInfo:
        for info in self.list():
            if info.id == session_id:
                return info
        raise T3Error(f"no session {session_id!r}", hint="list them with the sessions screen (ctrl+o)")

    def rename(self, session_id: str, title: str) -> None:
        title = title.strip()
        if not title:
            raise T3Error("a session title cannot be empty")
        with self.db:
            cur = self.db.execute("UPDATE sessions SET title = ? WHERE id = ?", (title, session_id))
        if cur.rowcount == 0:
            raise T3Error(f"no session {session_id!r}")

    def delete(self, session_id: str) -> None:
        """Delete a session, its runs, and attachment data no other run refers to."""
        with self.db:
            self.db.execute("DELETE FROM run_text WHERE rowid IN (SELECT id FROM runs WHERE session_id = ?)",
                            (session_id,))
            self.db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
            self.db.execute("DELETE FROM blobs WHERE sha256 NOT IN (SELECT sha256 FROM run_files)")

    # -- runs ------------------------------------------------------------------------------------

    def add_run(self, session_id: str, traj: Trajectory) -> int:
        """Save a finished run (the whole Trajectory) and its attachments' bytes."""
        now = time.time()
        with self.db:
            cur = self.db.execute(
                "INSERT INTO runs (session_id, trajectory, created_at) VALUES (?, ?, ?)",
                (session_id, traj.model_dump_json(), now),
            )
            run_id = int(cur.lastrowid or 0)
            _store_files(self.db, run_id, traj)
            self.db.execute("INSERT INTO run_text (rowid, text) VALUES (?, ?)", (run_id, searchable_text(traj)))
            self.db.execute(
                "UPDATE sessions SET updated_at = ?, model = COALESCE(?, model) WHERE id = ?",
                (now, traj.model, session_id),
            )
        return run_id

    def runs(self, session_id: str) -> list[Trajectory]:
        rows = self.db.execute(
            "SELECT trajectory FROM runs WHERE session_id = ? ORDER BY id", (session_id,)
        ).fetchall()
        return [Trajectory.model_validate_json(text) for (text,) in rows]

    def trajectory(self, task_id: str) -> Trajectory:
        """The saved run of the task `task_id`."""
        row = self.db.execute("SELECT trajectory FROM runs WHERE json_extract(trajectory, '$.task.id') = ?",
                              (task_id,)).fetchone()
        if row is None:
            raise T3Error(f"no run {task_id!r} in {self.path}", hint="list the chats with `t3edge logs list`")
        return Trajectory.model_validate_json(row[0])

    def search(self, words: str, limit: int = 50) -> list[SearchHit]:
        """Runs whose question, thoughts, code, observations, errors or answer contain all of
        `words` (whole words, any case; a trailing * matches a prefix), most recent first."""
        terms = [w for w in words.split() if w.strip('"*')]
        if not terms:
            raise T3Error("nothing to search for", hint="give one or more words")
        query = " ".join('"' + w.rstrip("*").replace('"', '""') + '"' + ("*" if w.endswith("*") else "")
                         for w in terms)
        rows = self.db.execute(
            """SELECT s.id, s.title, r.trajectory, snippet(run_text, 0, '[', ']', ' ... ', 12)
               FROM run_text JOIN runs r ON r.id = run_text.rowid JOIN sessions s ON s.id = r.session_id
               WHERE run_text MATCH ? ORDER BY r.id DESC LIMIT ?""", (query, limit)).fetchall()
        return [SearchHit(chat_id=sid, title=title, task_id=json.loads(traj)["task"]["id"],
                          snippet=" ".join(snippet.split()))
                for sid, title, traj, snippet in rows]

    def find(self, ref: str) -> str:
        """The id of the chat `ref` names: a chat id, the task id of one of its runs, or `last` (the
        chat used most recently)."""
        if ref == "last":
            chats = self.list()
            if not chats:
                raise T3Error("there is no chat to continue yet", hint="run a task first")
            return chats[0].id
        row = self.db.execute("SELECT id FROM sessions WHERE id = ?", (ref,)).fetchone()
        if row is None:
            row = self.db.execute("SELECT session_id FROM runs WHERE json_extract(trajectory, '$.task.id') = ?",
                                  (ref,)).fetchone()
        if row is None:
            raise T3Error(f"no chat or run {ref!r} in {self.path}",
                          hint="list the chats with `t3edge logs list`, or use --continue last")
        return str(row[0])

    def blob_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM blobs").fetchone()[0])

    def restore_file(self, sha256: str, name: str, folder: Path) -> Path:
        """Write a stored attachment to `folder/<sha256[:12]>/<name>` (for a file moved or deleted since)."""
        row = self.db.execute("SELECT data FROM blobs WHERE sha256 = ?", (sha256,)).fetchone()
        if row is None:
            raise T3Error(f"attachment {name} was not stored (its file was gone when the run was saved)")
        out = folder / sha256[:12] / Path(name).name
        if not out.is_file():
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(row[0])
        return out

    # -- export ----------------------------------------------------------------------------------

    def export_jsonl(self, session_id: str, path: Path) -> Path:
        """One Trajectory per line (the format `t3edge` reads everywhere)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.unlink()
        with JsonlWriter(path) as writer:
            for traj in self.runs(session_id):
                writer.write(traj)
        return path

    def export_markdown(self, session_id: str, path: Path) -> Path:
        info = self.get(session_id)
        parts = [f"# {info.title}\n", f"Model: {info.model or 'unknown'}\n"]
        for traj in self.runs(session_id):
            parts.append(trajectory_markdown(traj))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(parts), encoding="utf-8")
        return path


def _fence(text: str, lang: str = "") -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}\n"


def trajectory_markdown(traj: Trajectory) -> str:
    """A readable Markdown account of one run: the question, every step, the answer."""
    out = [f"## {traj.task.query}\n"]
    for att in traj.task.attachments:
        out.append(f"- attachment: `{att.path}`")
    if traj.task.attachments:
        out.append("")
    for step in traj.steps:
        out.append(f"### Step {step.index}\n")
        if step.thought:
            out.append(step.thought.strip() + "\n")
        if step.code:
            out.append(_fence(step.code, "py"))
        elif step.kind == "parse_error":
            out.append("Model output without runnable code:\n")
            out.append(_fence(step.raw_output))
        if step.observation is not None:
            out.append("Observation:\n")
            out.append(_fence(step.observation))
        if step.error:
            out.append("Error:\n")
            out.append(_fence(step.error))
        for produced in step.produced_files:
            out.append(f"- produced: `{produced}`")
    if traj.final_answer is not None:
        answer = traj.final_answer if isinstance(traj.final_answer, str) else json.dumps(traj.final_answer)
        out.append(f"**Answer:** {answer}\n")
    out.append(f"_ended: {traj.ended or 'unknown'}; tokens in {traj.tokens['in']}, out {traj.tokens['out']}_\n")
    return "\n".join(out)


def restore_attachments(store: ChatStore, traj: Trajectory, folder: Path | None = None) -> Trajectory:
    """`traj` with each attachment whose file has gone replaced by the store's copy of it (written
    under `folder`, default `<data dir>/files`); attachments the store never kept stay as they are."""
    from t3edge.config import data_dir

    folder = folder or data_dir() / "files"
    attachments = []
    for att in traj.task.attachments:
        if not Path(att.path).is_file() and att.sha256 is not None:
            try:
                restored: Path | None = store.restore_file(att.sha256, att.path, folder)
            except T3Error:  # never stored: kept as it is, the tools say the file is missing
                restored = None
            if restored is not None:
                att = att.model_copy(update={"path": str(restored)})
        attachments.append(att)
    if attachments == traj.task.attachments:
        return traj
    return traj.model_copy(update={"task": traj.task.model_copy(update={"attachments": attachments})})


def store_path() -> Path:
    """Where the chat store lives: `<data dir>/chats.db`."""
    from t3edge.config import data_dir

    return data_dir() / "chats.db"


def default_store() -> ChatStore:
    return ChatStore(store_path())
