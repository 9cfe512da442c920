"""Stage 5: the T3 agent, driven by the API model, solves each verified task with the real tools
in its sandbox; the whole trajectory (every step) and the answer are kept.

Runs that end without a final answer are dropped with how they ended (step limit, error limit).
"""

from __future__ import annotations

import asyncio

from synth.backend import ClientBackend
from synth.engine import RunContext, Step
from synth.errors import Rejected
from synth.items import SynthItem
from t3edge.agent import AgentConfig, load_agent_config
from t3edge.chat import Chat
from t3edge.trajectory import Attachment, Task

STAGE = "trajectories"


def agent_config(ctx: RunContext) -> AgentConfig:
    """The `agent` settings (tools, sandbox limits, web), with this stage's limits and sampling."""
    cfg = ctx.cfg.trajectories
    return load_agent_config(overrides={
        "max_steps": cfg.max_steps, "max_errors": cfg.max_errors,
        "workspace": str(ctx.run_dir / "work"),
        "generation.max_tokens": cfg.max_tokens, "generation.temperature": cfg.temperature,
    })


async def solve(ctx: RunContext, item: SynthItem) -> SynthItem:
    backend = ClientBackend(ctx.client, asyncio.get_running_loop(), STAGE)
    chat = Chat(backend, config=agent_config(ctx))  # in a clean folder, even after a run killed mid-task
    task = Task(id=item.id, query=item.query,
                attachments=[Attachment.from_path(f.path) for f in item.files])
    traj = await ctx.blocking(chat.run_to_end, task)
    if backend.failure is not None:  # the API gave up or refused, or the budget is spent
        raise backend.failure
    if traj.ended != "final_answer":
        raise Rejected("no_final_answer", f"the run ended by {traj.ended}")
    if item.query_verdict is not None:
        traj.verdicts["query_file"] = item.query_verdict
    return item.model_copy(update={"trajectory": traj})


INPUT = "verify_query"
STEP = Step(STAGE, solve)
