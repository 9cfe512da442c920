"""Stage 7: keep a task only if both verifiers accepted it (the query with its files, and the
trajectory); every other item is dropped with the verifier's reason."""

from __future__ import annotations

from synth.engine import RunContext, Step
from synth.errors import Rejected
from synth.items import SynthItem

STAGE = "filter"


def check(item: SynthItem) -> SynthItem:
    if item.query_verdict is None or item.query_verdict.correct is not True:
        raise Rejected("query_file_rejected", item.query_verdict.thought[:300] if item.query_verdict else "no verdict")
    verdict = item.trajectory.verdicts.get("trajectory") if item.trajectory else None
    if verdict is None or verdict.correct is not True:
        raise Rejected("trajectory_rejected", verdict.thought[:300] if verdict else "no verdict")
    return item


async def _check(_ctx: RunContext, item: SynthItem) -> SynthItem:
    return check(item)


INPUT = "verify_traj"
STEP = Step(STAGE, _check)
