"""The conversation an agent run is, as backend messages.

Built by the agent step by step at inference and rebuilt from a Trajectory for training, by the
same functions, so the two cannot drift. Images go only in the first user message, before the
task text; the conversation only ever grows, so backends can reuse their KV prefix.
"""

from __future__ import annotations

from collections.abc import Sequence

from t3edge.backends.base import ImagePart, Message, Part, TextPart
from t3edge.protocol import task_message
from t3edge.trajectory import Step, Trajectory


def first_messages(system_prompt: str, task_text: str, images: Sequence[str] = ()) -> list[Message]:
    """The system message and the task message (`Task: ...`, with the images as pixels)."""
    parts: list[Part] = [ImagePart(p) for p in images]
    parts.append(TextPart(task_text))
    return [Message("system", system_prompt), Message("user", parts)]


def step_messages(step: Step) -> list[Message]:
    """The assistant turn of a step and, when there was one, the feedback turn after it."""
    out = [Message("assistant", step.raw_output)]
    if step.feedback is not None:
        out.append(Message("user", step.feedback))
    return out


def trajectory_messages(traj: Trajectory) -> list[Message]:
    """The whole conversation of a finished trajectory, as the agent had it."""
    task_text = traj.task_message or task_message(
        traj.task.query, [a.path for a in traj.task.attachments]
    )
    messages = first_messages(traj.system_prompt or "", task_text, [a.path for a in traj.task.images])
    for step in traj.steps:
        messages.extend(step_messages(step))
    return messages
