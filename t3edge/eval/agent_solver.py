"""Solving benchmark items with the T3 agent (the same loop as `t3edge run`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from t3edge.agent.config import AgentConfig
from t3edge.backends.base import Backend
from t3edge.errors import BackendError
from t3edge.eval.gta import GTAItem
from t3edge.eval.gta_tools import gta_tools, own_tool_calls, recorded
from t3edge.eval.items import ToolCall
from t3edge.eval.runner import Item, Solved, Solver
from t3edge.eval.tasks import TaskItem
from t3edge.tools.base import ToolSet
from t3edge.trajectory import Task, Trajectory


def agent_solver(backend: Callable[[], Backend], config: AgentConfig, workspaces: Path, *,
                 gta_names: bool = True, fresh_backend: bool = False) -> Solver:
    """A Solver running the agent on each item.

    `backend` makes the model; it is called once, or once per item when `fresh_backend` (a
    replayed script then starts from its first output for every item, so resumed and sharded
    runs replay exactly what a single run does). Each item works in its own empty folder under
    `workspaces` (started clean, by the `Chat`). GTA items get GTA's tools under their own names
    when `gta_names`; their calls are recorded for the tool metrics, as are the calls of the
    built-in tasks (t3edge's own tools).
    """
    from t3edge.chat import Chat
    from t3edge.tools import default_tools

    config = config.model_copy(update={"workspace": workspaces})

    shared: list[Backend] = []

    def model() -> Backend:
        if fresh_backend:
            if shared:
                shared.pop().close()
        elif shared:
            shared[0].reset()
            return shared[0]
        shared.append(backend())
        return shared[0]

    def run(tools: ToolSet, task: Task) -> Trajectory:
        trajectory = Chat(model(), tools=tools, config=config).run_to_end(task)
        if trajectory.ended == "backend_error":  # not the model's answer: leave the item for a rerun
            raise BackendError(trajectory.error or "the model failed")
        return trajectory

    def solve(item: Item) -> Solved:
        task = item.task()
        if isinstance(item, GTAItem) and gta_names:
            tools = gta_tools()
            trajectory = run(tools, task)
            return Solved(trajectory, recorded(tools.take()))
        trajectory = run(default_tools(), task)
        if isinstance(item, GTAItem):
            return Solved(trajectory, own_tool_calls([n for s in trajectory.steps for n in s.tools_called]))
        if isinstance(item, TaskItem):  # the task's checker and tool choice need the calls made
            return Solved(trajectory, [ToolCall(name=n) for s in trajectory.steps for n in s.tools_called])
        return Solved(trajectory)

    return solve
