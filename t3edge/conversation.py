"""The conversation an agent run is, as backend messages.

Built by the agent step by step at inference and rebuilt from trajectories for training, by the
same functions, so the two cannot drift. Images go only in the user message of the task that
attached them, before its text; the conversation only ever grows, so backends can reuse their KV
prefix. A chat is a chain of runs: each follow-up run continues the whole conversation of the
runs before it (recorded in `Trajectory.continues`) with a new `Task: ...` turn.
"""

from __future__ import annotations

from collections.abc import Sequence

from t3edge.backends.base import ImagePart, Message, Part, TextPart
from t3edge.errors import T3Error
from t3edge.protocol import task_message
from t3edge.trajectory import Step, Trajectory


def first_messages(system_prompt: str, task_text: str, images: Sequence[str] = ()) -> list[Message]:
    """The system message and the task message (`Task: ...`, with the images as pixels)."""
    return [Message("system", system_prompt), task_turn(task_text, images)]


def task_turn(task_text: str, images: Sequence[str] = ()) -> Message:
    """The user message of a task: its images as pixels, then `Task: ...`."""
    parts: list[Part] = [ImagePart(p) for p in images]
    parts.append(TextPart(task_text))
    return Message("user", parts)


def followup_messages(earlier: Sequence[Message], task_text: str,
                      images: Sequence[str] = ()) -> list[Message]:
    """The conversation at a follow-up's first call: the earlier conversation, then the new task.

    Normally the earlier run ended with the model's answer, and the task is a new user turn. A run
    that stopped without answering (cancelled, failed) ends with a user turn; the task is then
    appended to that turn, so that turns keep alternating and the earlier text stays a prefix.
    """
    messages = list(earlier)
    turn = task_turn(task_text, images)
    if messages and messages[-1].role == "user":
        last = messages[-1]
        turn = Message("user", [*last.parts, *turn.images, TextPart("\n\n" + task_text)])
        messages[-1] = turn
    else:
        messages.append(turn)
    return messages


def step_messages(step: Step) -> list[Message]:
    """The assistant turn of a step and, when there was one, the feedback turn after it."""
    out = [Message("assistant", step.raw_output)]
    if step.feedback is not None:
        out.append(Message("user", step.feedback))
    return out


def _task_text(traj: Trajectory) -> str:
    return traj.task_message or task_message(traj.task.query, [a.path for a in traj.task.attachments])


def chat_messages(chain: Sequence[Trajectory]) -> list[Message]:
    """The whole conversation of the last run of a chat, as the agent had it: `chain` is the chat's
    runs in order (see `chat_chain`), each continuing all the runs before it."""
    if not chain:
        raise T3Error("a chat needs at least one run")
    messages: list[Message] = []
    for i, traj in enumerate(chain):
        images = [a.path for a in traj.task.images] if traj.images_shown else []
        if i == 0:
            messages = first_messages(traj.system_prompt or "", _task_text(traj), images)
        else:
            messages = followup_messages(messages, _task_text(traj), images)
        for step in traj.steps:
            messages.extend(step_messages(step))
    return messages


def trajectory_messages(traj: Trajectory) -> list[Message]:
    """The conversation of one run on its own (for a follow-up run: without the runs before it;
    `chat_messages` renders it as the model saw it)."""
    return chat_messages([traj])


def check_chain(chain: Sequence[Trajectory]) -> None:
    """Raise T3Error unless each run of `chain` continues exactly the runs before it."""
    ids = [traj.task.id for traj in chain]
    for i, traj in enumerate(chain):
        continues = list(traj.continues)
        if continues != ids[:i]:
            raise T3Error(
                f"run {traj.task.id!r} continues {continues or 'nothing'}, not {ids[:i] or 'nothing'}",
                hint="pass a chat's runs in order, from its first run (see t3edge.conversation.chat_chain)",
            )


def chat_chain(runs: Sequence[Trajectory], last: Trajectory | None = None) -> list[Trajectory]:
    """The chat that `last` (default: the last of `runs`) ends: the runs it continues, in order,
    looked up by task id among `runs`, then `last`. A run that continues nothing is a chat alone."""
    if last is None:
        if not runs:
            return []
        last = runs[-1]
    by_id = {traj.task.id: traj for traj in runs}
    earlier = list(last.continues)
    missing = [tid for tid in earlier if tid not in by_id]
    if missing:
        raise T3Error(f"run {last.task.id!r} continues runs that are not here: {', '.join(missing)}")
    return [by_id[tid] for tid in earlier] + [last]
