"""The stages in order over a run folder (the per-item ones as one flow); `run` chains them all and exports."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from synth.config import SynthConfig
from synth.engine import Progress, RunContext, StageReport, flow
from synth.export import ExportReport, export
from synth.items import STAGES
from synth.store import RunStore
from t3edge.config import data_dir
from t3edge.errors import T3Error

MODULES = {
    "queries": "synth.queries", "file_content": "synth.file_content", "files": "synth.files",
    "verify_query": "synth.verify_query", "trajectories": "synth.trajectories",
    "verify_traj": "synth.verify_traj", "filter": "synth.filter",
}


def run_dir(cfg: SynthConfig, override: str | Path | None = None) -> Path:
    """The run folder: the flag, else `synth.run_dir`, else DATA_DIR/synth/default."""
    chosen = override or cfg.run_dir or data_dir() / "synth" / "default"
    return Path(chosen).expanduser().resolve()


def export_dir(run: Path, override: str | Path | None = None) -> Path:
    return Path(override).expanduser() if override else run / "export"


async def run_stages(cfg: SynthConfig, run: Path, stages: Sequence[str], *,
                     progress: Progress | None = None) -> list[StageReport]:
    """Run `stages` in order; stop early when the budget is reached. The query stage works on the
    whole set (its batches are numbered and de-duplicated together); the stages after it work on
    one item at a time, and consecutive ones run as one flow (`engine.flow`): an item goes on to
    the next stage as soon as it has passed one."""
    unknown = [s for s in stages if s not in MODULES]
    if unknown:
        raise T3Error(f"unknown stage {unknown[0]!r}", hint=f"one of: {', '.join(STAGES)}")
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(cfg.model_dump(mode="json"), indent=2))
    reports: list[StageReport] = []
    async with RunContext(cfg, run, progress=progress) as ctx:
        for group in _groups(stages):
            if len(group) == 1 and hasattr(group[0], "run"):
                start = time.perf_counter()
                done = [await group[0].run(ctx)]
                done[0].seconds = done[0].busy = time.perf_counter() - start
            else:
                done = await flow(ctx, [m.STEP for m in group], ctx.store.items(group[0].INPUT))
            reports.extend(done)
            if any(r.stopped for r in done):
                break
    return reports


def _groups(stages: Sequence[str]) -> list[list[ModuleType]]:
    """The stages' modules, consecutive per-item stages that feed each other grouped together."""
    groups: list[list[ModuleType]] = []
    for name in stages:
        module = importlib.import_module(MODULES[name])
        last = groups[-1][-1] if groups else None
        feeds = last is not None and hasattr(last, "STEP") and getattr(module, "INPUT", None) == last.STAGE
        if feeds:
            groups[-1].append(module)
        else:
            groups.append([module])
    return groups


def run_pipeline(cfg: SynthConfig, run: Path, *, stages: Sequence[str] = STAGES,
                 export_to: Path | None = None,
                 progress: Progress | None = None) -> tuple[list[StageReport], ExportReport | None]:
    """Every stage, then the export (skipped when the budget stopped the run or nothing passed)."""
    reports = asyncio.run(run_stages(cfg, run, stages, progress=progress))
    if any(r.stopped for r in reports) or list(stages)[-1] != "filter":
        return reports, None
    store = RunStore(run)
    if not store.items("filter"):
        return reports, None
    return reports, export(store, export_to or export_dir(run), cfg.export.valid_fraction)
