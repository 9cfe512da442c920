"""Solving benchmark items with the T3 agent (the same loop as `t3edge run`)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from t3edge.agent.config import AgentConfig
from t3edge.backends.base import Backend
from t3edge.errors import BackendError
from t3edge.eval.gta import GTAItem
from t3edge.eval.gta_tools import gta_tools, own_tool_calls, recorded
from t3edge.eval.items import ToolCall
from t3edge.eval.runner import Item, ItemCancelled, Solved, Solver
from t3edge.eval.tasks import TaskItem
from t3edge.tools.base import ToolSet
from t3edge.trajectory import Task, Trajectory


class _Models:
    """The model of a run's items: one shared instance, made on first use, or a fresh one per
    item (`fresh`, closed when the item ends). The shared one forgets its cached prompt between
    items only when items run one at a time (`reset`): with several at once, each call brings the
    cache to its own conversation anyway."""

    def __init__(self, make: Callable[[], Backend], *, fresh: bool, reset: bool) -> None:
        self.make, self.fresh, self.reset = make, fresh, reset
        self._shared: Backend | None = None
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def one(self) -> Iterator[Backend]:
        if self.fresh:
            backend = self.make()
            try:
                yield backend
            finally:
                backend.close()
            return
        with self._lock:
            if self._shared is None:
                self._shared = self.make()
            elif self.reset:
                self._shared.reset()
        yield self._shared


def agent_solver(backend: Callable[[], Backend], config: AgentConfig, workspaces: Path, *,
                 gta_names: bool = True, fresh_backend: bool = False, jobs: int = 1) -> Solver:
    """A Solver running the agent on each item; `jobs` is how many items the runner runs at once.

    `backend` makes the model; it is called once, or once per item when `fresh_backend` (a
    replayed script then starts from its first output for every item, so resumed and sharded
    runs replay exactly what a single run does). Items running at once share the one model: an
    OpenAI-compatible server takes their calls together, a model loaded here takes them one
    after another (its backend serializes them) while the others run code. Each item works in its
    own empty folder under `workspaces` (started clean, by the `Chat`). GTA items get GTA's tools
    under their own names when `gta_names`; their calls are recorded for the tool metrics, as are
    the calls of the built-in tasks (t3edge's own tools).
    """
    from t3edge.chat import Chat
    from t3edge.tools import default_tools

    config = config.model_copy(update={"workspace": workspaces})
    models = _Models(backend, fresh=fresh_backend, reset=jobs == 1)

    def run(tools: ToolSet, task: Task, cancel: threading.Event) -> Trajectory:
        with models.one() as model:
            trajectory = Chat(model, tools=tools, config=config).run_to_end(task, cancel)
        if trajectory.ended == "cancelled":
            raise ItemCancelled(f"{task.id} was stopped before it finished")
        if trajectory.ended == "backend_error":  # not the model's answer: leave the item for a rerun
            raise BackendError(trajectory.error or "the model failed")
        return trajectory

    def solve(item: Item, cancel: threading.Event) -> Solved:
        task = item.task()
        if isinstance(item, GTAItem) and gta_names:
            tools = gta_tools()
            trajectory = run(tools, task, cancel)
            return Solved(trajectory, recorded(tools.take()))
        trajectory = run(default_tools(), task, cancel)
        if isinstance(item, GTAItem):
            return Solved(trajectory, own_tool_calls([n for s in trajectory.steps for n in s.tools_called]))
        if isinstance(item, TaskItem):  # the task's checker and tool choice need the calls made
            return Solved(trajectory, [ToolCall(name=n) for s in trajectory.steps for n in s.tools_called])
        return Solved(trajectory)

    return solve
