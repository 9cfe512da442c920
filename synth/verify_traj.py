"""Stage 6: the trajectory verifier (temperature 0.2). It sees the query, the images as pixels,
the other files by name, every step and the final answer, and judges the whole run. The verdict
is recorded on the trajectory; the filter stage drops what it rejects."""

from __future__ import annotations

import json

from pydantic import BaseModel

from synth.engine import RunContext, Step
from synth.items import SynthItem
from synth.prompts import VERIFY_TRAJ_SYSTEM
from t3edge.backends.base import ImagePart, Message, Part, TextPart
from t3edge.trajectory import Trajectory, Verdict

STAGE = "verify_traj"


class TrajVerdictReply(BaseModel):
    thought: str = ""
    correct: bool


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f" [... {len(text) - limit} more characters]"


def render_steps(traj: Trajectory, max_chars: int) -> str:
    lines: list[str] = []
    for step in traj.steps:
        lines.append(f"Step {step.index + 1}:")
        if step.thought:
            lines.append(f"Thought: {step.thought}")
        if step.code:
            lines.append(f"Code:\n```py\n{step.code}\n```")
        elif step.kind == "parse_error":
            lines.append(f"(no runnable code) {_clip(step.raw_output, max_chars)}")
        if step.observation is not None:
            lines.append(f"Observation: {_clip(step.observation, max_chars)}")
        if step.error is not None:
            lines.append(f"Error: {_clip(step.error, max_chars)}")
    lines.append(f"Final answer: {traj.final_answer!r}")
    return "\n".join(lines)


def verifier_message(item: SynthItem, max_chars: int) -> list[Part]:
    assert item.trajectory is not None
    parts: list[Part] = [TextPart(f"Query: {item.query}\n\nFiles:")]
    for f in item.files:
        parts.append(TextPart(f"\n{f.name} ({f.file_type}) at {f.path}" + (":" if f.source == "retrieved" else "")))
        if f.source == "retrieved":
            parts.append(ImagePart(f.path))
    parts.append(TextPart("\n\nThe assistant's steps:\n" + render_steps(item.trajectory, max_chars)))
    return parts


async def verify(ctx: RunContext, item: SynthItem) -> SynthItem:
    cfg = ctx.cfg.verify_traj
    messages = [Message("system", VERIFY_TRAJ_SYSTEM),
                Message("user", verifier_message(item, cfg.max_observation_chars))]
    reply = await ctx.client.structured(STAGE, messages, TrajVerdictReply,
                                        temperature=cfg.temperature, max_tokens=cfg.max_tokens)
    answer = "yes" if reply.correct else "no"
    verdict = Verdict(correct=reply.correct, thought=reply.thought, raw={
        "correct": answer,
        "traj_verification": json.dumps({"thought": reply.thought, "correct": answer}, ensure_ascii=False),
    })
    assert item.trajectory is not None
    traj = item.trajectory.model_copy(update={"verdicts": {**item.trajectory.verdicts, "trajectory": verdict}})
    return item.model_copy(update={"trajectory": traj})


INPUT = "trajectories"
STEP = Step(STAGE, verify)
