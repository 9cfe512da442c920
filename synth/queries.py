"""Stage 1: the model writes queries, `per_call` per call, from our seed examples; exact and near
duplicates are removed.

Calls are recorded as batches (`stages/query_batches.jsonl`) as they finish. Once every batch is
finished, the queries are numbered and de-duplicated in batch order, so the result does not
depend on which call came back first.
"""

from __future__ import annotations

import json
import os

from pydantic import BaseModel, Field

from synth.engine import RunContext, StageReport, map_items
from synth.items import Dropped, SynthItem, item_id
from synth.prompts import QUERY_SYSTEM, TOOLS, query_prompt
from synth.similarity import near_duplicates
from t3edge.backends.base import Message

STAGE = "queries"
BATCHES = "query_batches"
MIN_QUERY_CHARS = 15


class QueryDraft(BaseModel):
    query: str
    tools: list[str] = Field(default_factory=list)


class QueriesReply(BaseModel):
    queries: list[QueryDraft]


class QueryBatch(BaseModel):
    id: str
    batch: int
    queries: list[QueryDraft] = Field(default_factory=list)


async def write_batch(ctx: RunContext, batch: QueryBatch) -> QueryBatch:
    cfg = ctx.cfg.queries
    messages = [Message("system", QUERY_SYSTEM),
                Message("user", query_prompt(batch.batch, cfg.per_call, cfg.examples_per_call))]
    reply = await ctx.client.structured(STAGE, messages, QueriesReply, temperature=cfg.temperature,
                                        max_tokens=cfg.max_tokens, seed=batch.batch)
    return batch.model_copy(update={"queries": reply.queries})


def deduplicate(ctx: RunContext) -> tuple[list[SynthItem], list[Dropped]]:
    """Every finished batch's queries, in batch order, minus empty, exact and near duplicates."""
    batches = sorted((QueryBatch.model_validate(r) for r in ctx.store.records(BATCHES)),
                     key=lambda b: b.batch)
    seen_batches: set[int] = set()
    candidates: list[SynthItem] = []
    dropped: list[Dropped] = []
    ids: set[str] = set()
    for batch in batches:
        if batch.batch in seen_batches:
            continue
        seen_batches.add(batch.batch)
        for draft in batch.queries:
            query = " ".join(draft.query.split())
            qid = item_id(query)
            if len(query) < MIN_QUERY_CHARS:
                dropped.append(Dropped(id=qid, stage=STAGE, reason="empty_query", detail=repr(query)))
                continue
            if qid in ids:
                dropped.append(Dropped(id=f"{qid}-b{batch.batch}", stage=STAGE, reason="duplicate",
                                       detail=f"same text as {qid}"))
                continue
            ids.add(qid)
            tools = [t for t in draft.tools if t in TOOLS]
            candidates.append(SynthItem(id=qid, query=query, tools=tools, batch=batch.batch))
    dupes = near_duplicates([c.query for c in candidates], ctx.cfg.queries.duplicate_threshold)
    for index, kept in dupes.items():
        dropped.append(Dropped(id=candidates[index].id, stage=STAGE, reason="near_duplicate",
                               detail=f"like {candidates[kept].id}: {candidates[kept].query[:80]}"))
    return [c for i, c in enumerate(candidates) if i not in dupes], dropped


def _write_atomically(ctx: RunContext, items: list[SynthItem]) -> None:
    path = ctx.store.path(STAGE)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(item.model_dump(mode="json"), ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


async def run(ctx: RunContext) -> StageReport:
    batches = [QueryBatch(id=f"batch-{b:04d}", batch=b) for b in range(ctx.cfg.queries.calls)]
    report = await map_items(ctx, BATCHES, batches, write_batch)
    report.stage = STAGE
    if report.pending:
        return report
    finished = sorted(r["batch"] for r in ctx.store.records(BATCHES))
    marker = ctx.store.path(STAGE).with_suffix(".batches.json")
    if marker.is_file() and json.loads(marker.read_text()) == finished:
        return report
    items, dropped = deduplicate(ctx)
    already = {(d.stage, d.id) for d in ctx.store.all_dropped()}
    for d in dropped:
        if (d.stage, d.id) not in already:
            ctx.store.drop(d)
        report.reasons[d.reason] = report.reasons.get(d.reason, 0) + 1
    _write_atomically(ctx, items)
    marker.write_text(json.dumps(finished))
    report.passed = len(items)
    report.dropped += len(dropped)
    return report
