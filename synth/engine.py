"""What every stage shares: the run context, and running one function over many items
concurrently, durably and resumably."""

from __future__ import annotations

import asyncio
import fcntl
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

from pydantic import BaseModel

from synth.client import RequestCache, SynthClient
from synth.config import SynthConfig
from synth.errors import ApiFailed, BudgetExhausted, Rejected
from synth.image_pool import ImagePool
from synth.items import Dropped
from synth.ledger import Ledger
from synth.store import RunStore
from t3edge.errors import BadInput, T3Error

log = logging.getLogger(__name__)
T = TypeVar("T")

Progress = Callable[[str, int, int], None]  # stage, finished so far, total to do


class Identified(Protocol):
    id: str


ItemT = TypeVar("ItemT", bound=Identified)


@dataclass
class StageReport:
    stage: str
    passed: int = 0
    dropped: int = 0
    already_done: int = 0
    pending: int = 0  # not started: left for a later run (budget reached, or the stage stopped)
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def stopped(self) -> bool:
        return self.pending > 0


class RunContext:
    """A run's settings, store, API client and worker threads; open it with `async with`."""

    def __init__(self, cfg: SynthConfig, run_dir: Path, *, progress: Progress | None = None) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        self.store = RunStore(run_dir)
        self.progress = progress
        self.ledger: Ledger | None = None
        self._client: SynthClient | None = None
        self._threads = ThreadPoolExecutor(max_workers=cfg.api.concurrency, thread_name_prefix="synth")
        self.stopping = False  # set when no new item may start (budget spent, wrong settings)
        self.image_pool: ImagePool | None = None
        self._lock: IO[str]

    @property
    def client(self) -> SynthClient:
        assert self._client is not None, "use the context inside `async with`"
        return self._client

    async def __aenter__(self) -> RunContext:
        self._lock = open(self.run_dir / ".lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lock.close()
            raise T3Error(f"another synth process is working on {self.run_dir}",
                          hint="wait for it to finish, or stop it; a run resumes where it stopped") from exc
        self.ledger = Ledger(self.run_dir / "usage.jsonl")
        cache = RequestCache(Path(self.cfg.cache_dir).expanduser() if self.cfg.cache_dir
                             else self.run_dir / "cache")
        self._client = SynthClient(self.cfg.api, self.cfg.prices, self.ledger, cache,
                                   budget_usd=self.cfg.budget_usd)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
        self._threads.shutdown(wait=True)
        self.store.close()
        if self.ledger is not None:
            self.ledger.close()
        self._lock.close()  # releases the lock

    async def blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking work (sandboxed code, the agent, document reading) on a worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, partial(fn, *args, **kwargs))


async def map_items(ctx: RunContext, stage: str, items: Sequence[ItemT],
                    fn: Callable[[RunContext, ItemT], Awaitable[BaseModel]]) -> StageReport:
    """Run `fn` on every item not yet finished at `stage`, `api.concurrency` at a time.

    Each result is appended as soon as it is ready; a Rejected item is recorded as dropped with
    its reason. Once the budget is reached no new item starts and the rest is left for a later
    run; a T3Error (settings that no item can succeed with) does the same, then is raised.
    """
    report = StageReport(stage)
    done = ctx.store.done_ids(stage)
    todo = [item for item in items if item.id not in done]
    report.already_done = len(items) - len(todo)
    sem = asyncio.Semaphore(ctx.cfg.api.concurrency)
    finished = 0
    fatal: list[T3Error] = []

    def drop(item: ItemT, reason: str, detail: str, transient: bool) -> None:
        ctx.store.drop(Dropped(id=item.id, stage=stage, reason=reason, detail=detail, transient=transient))
        report.dropped += 1
        report.reasons[reason] = report.reasons.get(reason, 0) + 1

    async def one(item: ItemT) -> None:
        nonlocal finished
        async with sem:
            if ctx.stopping:
                report.pending += 1
                return
            try:
                result = await fn(ctx, item)
            except BudgetExhausted:
                ctx.stopping = True
                report.pending += 1
                return
            except Rejected as exc:
                drop(item, exc.reason, exc.detail, isinstance(exc, ApiFailed))
            except BadInput as exc:  # an unreadable file of this item
                drop(item, "bad_input", str(exc), False)
            except T3Error as exc:  # wrong settings: no item can succeed, stop the stage
                fatal.append(exc)
                ctx.stopping = True
                report.pending += 1
                return
            except Exception as exc:  # a failure of our own: keep the run going, retry it next run
                log.exception("%s: item %s failed", stage, item.id)
                drop(item, "internal_error", f"{type(exc).__name__}: {exc}", True)
            else:
                ctx.store.append(stage, result)
                report.passed += 1
            finished += 1
            if ctx.progress is not None:
                ctx.progress(stage, finished, len(todo))

    await asyncio.gather(*(one(item) for item in todo))
    if fatal:
        raise fatal[0]
    return report
