"""What every stage shares: the run context, and running one function over many items
concurrently, durably and resumably."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import time
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
ITEMS_PER_REQUEST_SLOT = 2  # items in a flow at once, per request the API may have in flight


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
    seconds: float = 0.0  # from the stage's first item started to its last finished
    busy: float = 0.0  # the time its items spent in it, added up
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
        self.image_pool: ImagePool | None = None  # loaded by the files stage when it needs it
        self.image_pool_lock = asyncio.Lock()
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


@dataclass
class Step:
    """A stage that works on one item at a time: its name and what it does to an item."""

    stage: str
    fn: Callable[[RunContext, Any], Awaitable[BaseModel]]


async def map_items(ctx: RunContext, stage: str, items: Sequence[ItemT],
                    fn: Callable[[RunContext, ItemT], Awaitable[BaseModel]]) -> StageReport:
    """`fn` on every item not yet finished at `stage` (see `flow`)."""
    return (await flow(ctx, [Step(stage, fn)], items))[0]


async def flow(ctx: RunContext, steps: Sequence[Step], items: Sequence[ItemT]) -> list[StageReport]:
    """Take every item through `steps` in order, each as soon as it has passed the step before:
    no step waits for another to finish. Items enter in order, at most `ITEMS_PER_REQUEST_SLOT` x
    `api.concurrency` at a time (enough to keep every request slot busy while some items run
    local work, and few enough that finished items come out early); requests are bounded by the
    API client (`api.concurrency`), blocking work by the run's worker threads.

    Each result is appended as soon as it is ready, so a run killed at any point resumes with what
    each item had finished (an item finished at a step takes its saved result to the next). A
    Rejected item is recorded as dropped at its step with its reason and goes no further. Once the
    budget is reached no new step starts and the rest is left for a later run; a T3Error (settings
    that no item can succeed with) does the same, then is raised.
    """
    reports = [StageReport(step.stage) for step in steps]
    done = [ctx.store.done_ids(step.stage) for step in steps]
    saved = [{i.id: i for i in ctx.store.items(step.stage)} for step in steps[:-1]]
    expected = [sum(item.id not in d for item in items) for d in done]  # each step's total for progress
    finished = [0] * len(steps)
    first_start: list[float | None] = [None] * len(steps)
    last_end = [0.0] * len(steps)
    fatal: list[T3Error] = []

    def tick(k: int) -> None:
        if ctx.progress is not None:
            ctx.progress(steps[k].stage, finished[k], expected[k])

    def goes_no_further(item_id: str, k: int, pending: bool) -> None:
        """The item stopped at step k: the later steps no longer expect it (`pending`: it was
        stopped, not dropped, so they too have it left for a later run)."""
        for later in range(k + 1, len(steps)):
            if item_id not in done[later]:
                expected[later] -= 1
                reports[later].pending += pending
                tick(later)

    def drop(k: int, item: Any, reason: str, detail: str, transient: bool) -> None:
        ctx.store.drop(Dropped(id=item.id, stage=steps[k].stage, reason=reason, detail=detail,
                               transient=transient))
        reports[k].dropped += 1
        reports[k].reasons[reason] = reports[k].reasons.get(reason, 0) + 1

    async def attempt(k: int, item: Any) -> tuple[Any | None, bool]:
        """Step k on `item`: (its result, or None when the item goes no further; whether it was
        stopped, i.e. left for a later run, rather than dropped)."""
        step, report = steps[k], reports[k]
        if ctx.stopping:
            report.pending += 1
            return None, True
        started = time.perf_counter()
        if first_start[k] is None:
            first_start[k] = started
        result = None
        try:
            result = await step.fn(ctx, item)
        except BudgetExhausted:
            ctx.stopping = True
            report.pending += 1
            return None, True
        except Rejected as exc:
            drop(k, item, exc.reason, exc.detail, isinstance(exc, ApiFailed))
        except BadInput as exc:  # an unreadable file of this item
            drop(k, item, "bad_input", str(exc), False)
        except T3Error as exc:  # wrong settings: no item can succeed, stop the run
            fatal.append(exc)
            ctx.stopping = True
            report.pending += 1
            return None, True
        except Exception as exc:  # a failure of our own: keep the run going, retry it next run
            log.exception("%s: item %s failed", step.stage, item.id)
            drop(k, item, "internal_error", f"{type(exc).__name__}: {exc}", True)
        else:
            record = result.model_dump(mode="json")
            ctx.store.append(step.stage, record)
            report.passed += 1
            result = type(result).model_validate(record)  # what a resumed run would read back
        finally:
            ended = time.perf_counter()
            report.busy += ended - started
            last_end[k] = max(last_end[k], ended)
        finished[k] += 1
        tick(k)
        return result, False

    entered = asyncio.Semaphore(ITEMS_PER_REQUEST_SLOT * ctx.cfg.api.concurrency)

    async def through(item: Any) -> None:
        async with entered:
            await steps_of(item)

    async def steps_of(item: Any) -> None:
        item_id = item.id
        for k in range(len(steps)):
            stopped = False
            if item_id in done[k]:
                reports[k].already_done += 1
                item = saved[k].get(item_id) if k + 1 < len(steps) else None  # dropped there: None
            else:
                item, stopped = await attempt(k, item)
            if item is None:
                goes_no_further(item_id, k, stopped)
                return

    await asyncio.gather(*(through(item) for item in items))
    for k, report in enumerate(reports):
        report.seconds = last_end[k] - first_start[k] if first_start[k] is not None else 0.0
    if fatal:
        raise fatal[0]
    return reports
