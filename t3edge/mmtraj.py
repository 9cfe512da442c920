"""A lossless bridge between our trajectories and the released MM-Traj training record (the
Hugging Face dataset PengxiangLi/MAT; docs/formats.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from t3edge.errors import T3Error
from t3edge.protocol import parse_feedback, parse_model_output, task_message
from t3edge.trajectory import Attachment, Step, Task, Trajectory, Verdict


class MMTrajTurn(BaseModel):
    role: Literal["user", "assistant"]
    content: str


class MMTrajRecord(BaseModel):
    """The released MM-Traj training record (Hugging Face dataset PengxiangLi/MAT)."""

    model_config = {"populate_by_name": True, "extra": "allow"}

    id: str
    image: str | dict[str, str] | None = None
    system_prompt: str | None = Field(default=None, alias="system-prompt")
    answer: Any = None
    conversations: list[MMTrajTurn]
    correct: Any = None
    traj_verification: Any = None

    def dump(self) -> dict[str, Any]:
        """The record as the released files spell it (`system-prompt`, unset keys left out)."""
        return self.model_dump(by_alias=True, exclude_unset=True, mode="json")


def _strip_image_tags(text: str, tags: list[str]) -> str:
    for tag in tags:
        prefix = tag + "\n"
        if text.startswith(prefix):
            text = text[len(prefix):]
    return text


def from_mmtraj(record: MMTrajRecord | dict[str, Any], *, root: str | Path | None = None) -> Trajectory:
    """Read a released MM-Traj record into a Trajectory (`root` prefixes relative image paths)."""
    rec = record if isinstance(record, MMTrajRecord) else MMTrajRecord.model_validate(record)
    if not rec.conversations or rec.conversations[0].role != "user":
        raise T3Error(f"MM-Traj record {rec.id}: conversations must start with a user turn")

    if rec.image is None:
        images: list[tuple[str, str]] = []
    elif isinstance(rec.image, str):
        images = [("<image>", rec.image)]
    else:
        images = list(rec.image.items())
    attachments = [
        Attachment(path=str(Path(root) / p) if root else p, kind="image", placeholder=tag)
        for tag, p in images
    ]

    first = rec.conversations[0].content
    body = _strip_image_tags(first, [tag for tag, _ in images])
    query = body.split("\n", 1)[0]
    query = query[len("Task: "):] if query.startswith("Task: ") else query

    steps: list[Step] = []
    turns = rec.conversations[1:]
    i = 0
    while i < len(turns):
        turn = turns[i]
        if turn.role != "assistant":
            raise T3Error(f"MM-Traj record {rec.id}: turn {i + 1} should be the assistant's")
        feedback = turns[i + 1].content if i + 1 < len(turns) else None
        steps.append(_step_from_texts(len(steps), turn.content, feedback))
        i += 2

    verdicts: dict[str, Verdict] = {}
    fields = {MMTrajRecord.model_fields[f].alias or f for f in rec.model_fields_set}
    if "correct" in fields or "traj_verification" in fields:
        verdicts["trajectory"] = Verdict(
            correct=_yes_no(rec.correct), thought=_verification_thought(rec.traj_verification),
            raw={"correct": rec.correct, "traj_verification": rec.traj_verification},
        )
    extra = {k: v for k, v in (rec.model_extra or {}).items()}
    return Trajectory(
        task=Task(id=rec.id, query=query, attachments=attachments),
        system_prompt=rec.system_prompt,
        task_message=body,
        steps=steps,
        verdicts=verdicts,
        final_answer=rec.answer,
        ended="final_answer" if rec.answer is not None else None,
        meta={
            "source": "mmtraj",
            "mmtraj_fields": sorted(fields | set(extra)),
            "mmtraj_image_form": "none" if rec.image is None else type(rec.image).__name__,
            "mmtraj_extra": extra,
            "mmtraj_first_turn": first,
        },
    )


def _step_from_texts(index: int, raw: str, feedback: str | None) -> Step:
    parsed = parse_model_output(raw)
    observation, error = parse_feedback(feedback) if feedback is not None else (None, None)
    return Step(
        index=index,
        kind="action" if parsed.code is not None else "parse_error",
        raw_output=raw,
        thought=parsed.thought,
        code=parsed.code,
        observation=observation,
        error=error,
        feedback=feedback,
    )


def _yes_no(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"yes", "true", "no", "false"}:
        return value.strip().lower() in {"yes", "true"}
    return None


def _verification_thought(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("thought", ""))
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        return str(parsed.get("thought", "")) if isinstance(parsed, dict) else value
    return ""


def to_mmtraj(traj: Trajectory, *, root: str | Path | None = None) -> MMTrajRecord:
    """Write a Trajectory as a released MM-Traj record (paths made relative to `root` if given).

    A trajectory read by `from_mmtraj` comes back exactly as it was read.
    """
    meta = traj.meta
    images = traj.task.images
    paths = [_relative(a.path, root) for a in images]
    form = meta.get("mmtraj_image_form")
    if form == "none" or not images and form is None:
        image: str | dict[str, str] | None = None
        tags: list[str] = []
    elif form == "str" or (form is None and len(images) == 1):
        image = paths[0]
        tags = [images[0].placeholder or "<image>"]
    else:
        tags = [a.placeholder or f"<image_{j:02d}>" for j, a in enumerate(images)]
        image = dict(zip(tags, paths))

    first = meta.get("mmtraj_first_turn")
    if first is None:
        body = traj.task_message or task_message(traj.task.query, [a.path for a in traj.task.attachments])
        first = "".join(tag + "\n" for tag in tags) + body
    conversations = [MMTrajTurn(role="user", content=first)]
    for step in traj.steps:
        if step.kind == "final_answer_request":
            continue
        conversations.append(MMTrajTurn(role="assistant", content=step.raw_output))
        if step.feedback is not None:
            conversations.append(MMTrajTurn(role="user", content=step.feedback))

    data: dict[str, Any] = {
        "id": traj.task.id,
        "image": image,
        "system-prompt": traj.system_prompt,
        "answer": traj.final_answer,
        "conversations": [t.model_dump() for t in conversations],
    }
    verdict = traj.verdicts.get("trajectory")
    if verdict is not None:
        raw = verdict.raw if isinstance(verdict.raw, dict) else {}
        data["correct"] = raw.get("correct", "yes" if verdict.correct else "no")
        data["traj_verification"] = raw.get(
            "traj_verification", json.dumps({"thought": verdict.thought, "correct": data["correct"]})
        )
    data.update(meta.get("mmtraj_extra", {}))
    fields = meta.get("mmtraj_fields")
    if fields is not None:
        data = {k: v for k, v in data.items() if k in fields}
    return MMTrajRecord.model_validate(data)


def _relative(path: str, root: str | Path | None) -> str:
    if root is None:
        return path
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path
