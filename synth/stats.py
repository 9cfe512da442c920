"""What a run produced (MM-Traj's statistics, docs/synth.md, for our data): items per stage, why items
were dropped, file types, tool use, steps per kept trajectory, tokens and cost. As tables and a PNG."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from pydantic import BaseModel, Field

from synth.items import STAGES
from synth.ledger import Ledger, StageUsage
from synth.store import RunStore
from t3edge.errors import T3Error

ORDER = ("query_batches", *STAGES)


class RunStats(BaseModel):
    run: str
    passed: dict[str, int] = Field(default_factory=dict)
    dropped: dict[str, int] = Field(default_factory=dict)
    reasons: dict[str, dict[str, int]] = Field(default_factory=dict)
    file_types: dict[str, int] = Field(default_factory=dict)
    file_sources: dict[str, int] = Field(default_factory=dict)
    tools: dict[str, int] = Field(default_factory=dict)
    steps: dict[int, int] = Field(default_factory=dict)
    usage: dict[str, StageUsage] = Field(default_factory=dict)

    @property
    def total_cost(self) -> float:
        return sum(u.cost_usd for u in self.usage.values())

    @property
    def total_tokens(self) -> tuple[int, int]:
        return (sum(u.prompt_tokens for u in self.usage.values()),
                sum(u.completion_tokens for u in self.usage.values()))


def _sorted(counter: Counter) -> dict:
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0]))))


def collect(run: Path) -> RunStats:
    if not run.is_dir():
        raise T3Error(f"no synthesis run at {run}", hint="give the run folder (synth.run_dir)")
    store = RunStore(run)
    stats = RunStats(run=str(run))
    for stage in ORDER:
        stats.passed[stage] = len({r.get("id") for r in store.records(stage)})
    reasons: dict[str, Counter] = {}
    for d in store.dropped():
        reasons.setdefault(d.stage, Counter())[d.reason] += 1
    stats.reasons = {s: _sorted(c) for s, c in reasons.items()}
    stats.dropped = {s: sum(c.values()) for s, c in reasons.items()}

    types: Counter = Counter()
    sources: Counter = Counter()
    for item in store.items("files"):
        for f in item.files:
            types[f.file_type] += 1
            sources[f.source] += 1
    stats.file_types, stats.file_sources = _sorted(types), _sorted(sources)

    tools: Counter = Counter()
    steps: Counter = Counter()
    for item in store.items("filter"):
        assert item.trajectory is not None
        actions = [s for s in item.trajectory.steps if s.kind != "final_answer_request"]
        steps[len(actions)] += 1
        for step in actions:
            tools.update(step.tools_called)
    stats.tools = _sorted(tools)
    stats.steps = dict(sorted(steps.items()))
    if (run / "usage.jsonl").is_file():
        ledger = Ledger(run / "usage.jsonl")
        ledger.close()
        stats.usage = ledger.stages
    return stats


def _share(counts: dict, key: object) -> str:
    total = sum(counts.values())
    return f"{100 * counts[key] / total:.1f}%" if total else "-"


def render(stats: RunStats) -> list:
    """Rich tables of the statistics."""
    from rich.table import Table

    funnel = Table(title=f"Items per stage ({stats.run})")
    for col in ("stage", "passed", "dropped", "reasons"):
        funnel.add_column(col, justify="right" if col in ("passed", "dropped") else "left")
    for stage in ORDER:
        reasons = ", ".join(f"{r} {n}" for r, n in stats.reasons.get(stage, {}).items())
        funnel.add_row(stage, str(stats.passed.get(stage, 0)), str(stats.dropped.get(stage, 0)), reasons)

    dist = Table(title="Distributions")
    for col in ("what", "value", "count", "share"):
        dist.add_column(col)
    for title, counts in (("file type", stats.file_types), ("file source", stats.file_sources),
                          ("tool calls", stats.tools), ("steps", stats.steps)):
        for key, n in counts.items():
            dist.add_row(title, str(key), str(n), _share(counts, key))

    usage = Table(title="Tokens and cost")
    for col in ("stage", "requests", "cache hits", "prompt", "completion", "cost $", "retries", "failures", "repairs"):
        usage.add_column(col)
    for stage, u in stats.usage.items():
        usage.add_row(stage, str(u.requests), str(u.cache_hits), str(u.prompt_tokens),
                      str(u.completion_tokens), f"{u.cost_usd:.4f}",
                      ", ".join(f"{k} {v}" for k, v in u.retries.items()),
                      ", ".join(f"{k} {v}" for k, v in u.failures.items()),
                      ", ".join(f"{k} {v}" for k, v in u.repairs.items()))
    prompt, completion = stats.total_tokens
    usage.add_row("total", "", "", str(prompt), str(completion), f"{stats.total_cost:.4f}", "", "", "")
    return [funnel, dist, usage]


def plot(stats: RunStats, path: Path) -> Path:
    """The statistics as one PNG: funnel, drop reasons, file types, tools, steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    panels = [
        ("items passed per stage", {s: stats.passed.get(s, 0) for s in ORDER}),
        ("drop reasons", {f"{s}: {r}": n for s, rs in stats.reasons.items() for r, n in rs.items()}),
        ("file types", stats.file_types),
        ("tool calls (kept trajectories)", stats.tools),
        ("steps per kept trajectory", {str(k): v for k, v in stats.steps.items()}),
        ("tokens per stage (prompt + completion)",
         {s: u.prompt_tokens + u.completion_tokens for s, u in stats.usage.items()}),
    ]
    for ax, (title, counts) in zip(axes.flat, panels, strict=True):
        ax.set_title(title)
        if not counts:
            ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        labels = [str(k) for k in counts]
        if title.startswith("steps"):
            ax.bar(labels, list(counts.values()))
            ax.set_xlabel("steps")
            continue
        ax.barh(labels, list(counts.values()))
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
    fig.suptitle(f"{stats.run}: total cost ${stats.total_cost:.4f}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
