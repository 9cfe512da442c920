"""A chat: the one owner of running the agent in a conversation.

A `Chat` holds a loaded model, the agent's settings and tools, the chat's earlier runs and the
store it saves to. `new_task()` makes a task (its id, its attachments checked); `Chat.run()` runs
it as a fresh chat or as a follow-up of the earlier runs, in the chat's working folder, streams the
agent's events, and saves the finished run. The command line, the terminal app, evaluation and
synthesis all run the agent through it; none of them assembles a run.

Working folders: a run given no folder works in `<agent.workspace or data dir/workspaces>/<task id>`
(named by `Agent.workspace_for`); a fresh run there starts in an empty folder (what an interrupted
attempt at the same task left is removed); a follow-up works in its chat's folder.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from t3edge.agent import Agent, AgentConfig
from t3edge.agent.approval import Approver
from t3edge.agent.events import AgentEvent, RunFinished
from t3edge.backends.base import Backend
from t3edge.chats import ChatStore, restore_attachments
from t3edge.conversation import chat_chain
from t3edge.errors import BadInput
from t3edge.images import load_image
from t3edge.models import BackendKind
from t3edge.tools import ToolSet
from t3edge.trajectory import Attachment, Task, Trajectory


def model_spec(spec: str | None, kind: BackendKind | None = None) -> str:
    """The model a command runs: `spec`, or the configured default for `kind` (the one default rule)."""
    from t3edge.models import load_models_config

    return spec or load_models_config().default_model(kind)


def prepare_model(spec: str | None, kind: BackendKind | None = None) -> str:
    """`model_spec`, after which an MLX model on a Linux CPU re-executes the process with a fast
    BLAS (`t3edge.blas`; once: the relaunched process goes on)."""
    from t3edge.blas import fast_blas_for

    spec = model_spec(spec, kind)
    fast_blas_for(spec, kind)
    return spec


def load_model(spec: str | None, kind: BackendKind | None = None, adapter: str | None = None) -> Backend:
    """Load the model a command runs (see `prepare_model`)."""
    from t3edge.loading import load_backend

    return load_backend(prepare_model(spec, kind), backend=kind, adapter=adapter)


def new_task(query: str, files: Sequence[str | Path] = (), *, task_id: str | None = None) -> Task:
    """A task for `query` with `files` attached (images are read now, so a corrupt one fails before
    any model work); its id is `run-<date>-<time>-<random>` unless given."""
    if not query.strip():
        raise BadInput("the task is empty", hint='say what to do: t3edge run "What is the total?" --file receipt.jpg')
    attachments = [Attachment.from_path(Path(f).resolve()) for f in files]
    for attachment in attachments:
        if attachment.is_image:
            load_image(attachment.path)
    task_id = task_id or time.strftime("run-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    return Task(id=task_id, query=query, attachments=attachments)


def title_of(query: str) -> str:
    """A chat's title: the first line of its first question, shortened."""
    line = query.strip().splitlines()[0]
    return line if len(line) <= 60 else line[:59] + "…"


class Chat:
    """One conversation with the agent: earlier runs, where they are saved, how the next one runs.

    `store`: the chat store runs are saved to (None: nothing is saved, as in evaluation and
    synthesis); `chat_id`: the chat there (None: created with the first run). `workspace`: the
    folder every run works in, as given (never emptied); unset, each chat gets its own.
    """

    def __init__(self, backend: Backend, *, config: AgentConfig | None = None, tools: ToolSet | None = None,
                 store: ChatStore | None = None, chat_id: str | None = None,
                 history: Sequence[Trajectory] = (), workspace: Path | None = None,
                 approver: Approver | None = None) -> None:
        self.backend = backend
        self.config = config or AgentConfig()
        self.tools = tools
        self.store = store
        self.chat_id = chat_id
        self.history = list(history)
        self.workspace = workspace
        self.approver = approver

    @classmethod
    def resume(cls, backend: Backend, store: ChatStore, ref: str, **kwargs: object) -> Chat:
        """The chat `ref` names in `store` (a chat id, a run's task id, or `last`), to go on with:
        its runs up to the last one, attachments whose files have gone read from the store's copies."""
        chat_id = store.find(ref)
        history = [restore_attachments(store, traj) for traj in chat_chain(store.runs(chat_id))]
        return cls(backend, store=store, chat_id=chat_id, history=history, **kwargs)  # type: ignore[arg-type]

    def agent(self) -> Agent:
        return Agent(self.backend, tools=self.tools, config=self.config, workspace=self.workspace,
                     approver=self.approver)

    def problem(self, task: Task) -> str | None:
        """Why `task` cannot continue this chat with this model (the chat showed images to a model
        and this one is text-only, or the context would overflow), or None."""
        if not self.history:
            return None
        if not self.backend.supports_images and any(t.task.images and t.images_shown for t in self.history):
            return f"{self.backend.model_id} is a text-only model and the chat showed images to its model"
        return self.agent().followup_overflow(self.history, task)

    def run(self, task: Task, cancel: threading.Event | None = None) -> Iterator[AgentEvent]:
        """Run `task` in this chat, yielding the agent's events (the last is RunFinished); the
        finished run is saved and becomes part of the chat's history."""
        agent = self.agent()
        if not self.history and self.workspace is None:
            folder = agent.workspace_for(task)
            if folder.exists():  # left by an interrupted attempt at the same task: start clean
                shutil.rmtree(folder)
        for event in agent.run(task, cancel, history=self.history):
            if isinstance(event, RunFinished):
                self._save(event.trajectory)
            yield event

    def run_to_end(self, task: Task, cancel: threading.Event | None = None) -> Trajectory:
        """Run `task` and return its trajectory (see `run`)."""
        trajectory: Trajectory | None = None
        for event in self.run(task, cancel):
            if isinstance(event, RunFinished):
                trajectory = event.trajectory
        assert trajectory is not None
        return trajectory

    def _save(self, traj: Trajectory) -> None:
        self.history.append(traj)
        if self.store is None:
            return
        if self.chat_id is None:
            self.chat_id = self.store.create(title_of(traj.task.query), model=traj.model)
        self.store.add_run(self.chat_id, traj)
