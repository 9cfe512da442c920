"""A run on disk: one append-only JSONL file per stage, the dropped items, the files and the cache.

    RUN/stages/<stage>.jsonl   items that passed the stage, appended as each finishes
    RUN/dropped.jsonl          items that left, with stage, reason and detail
    RUN/files/<id>/            the files of each task
    RUN/usage.jsonl            tokens, cost, retries (see ledger.py)
    RUN/cache/                 the request cache

Each record is flushed to the operating system as one whole line when its item finishes, so a
killed process loses nothing it has finished (a crash of the machine itself may lose the last few
items, which are then simply done again). A torn last line is skipped by readers; resuming skips
every item already written or dropped for good, so nothing is redone and nothing is lost.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from synth.items import Dropped, SynthItem
from t3edge.jsonl import JsonlWriter, iter_jsonl


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._writers: dict[Path, JsonlWriter] = {}

    def path(self, name: str) -> Path:
        return self.root / "stages" / f"{name}.jsonl"

    @property
    def dropped_path(self) -> Path:
        return self.root / "dropped.jsonl"

    def files_dir(self, item_id: str) -> Path:
        return self.root / "files" / item_id

    def _append(self, path: Path, record: BaseModel | dict[str, Any]) -> None:
        writer = self._writers.get(path)
        if writer is None:
            writer = self._writers[path] = JsonlWriter(path)
        writer.write(record)

    def records(self, name: str) -> list[dict[str, Any]]:
        path = self.path(name)
        return list(iter_jsonl(path, on_bad_line="skip")) if path.is_file() else []

    def append(self, name: str, record: BaseModel | dict[str, Any]) -> None:
        self._append(self.path(name), record)

    def items(self, stage: str) -> list[SynthItem]:
        """The items that passed `stage`, in the order written, each id once."""
        seen: set[str] = set()
        out: list[SynthItem] = []
        for record in self.records(stage):
            item = SynthItem.model_validate(record)
            if item.id not in seen:
                seen.add(item.id)
                out.append(item)
        return out

    def drop(self, dropped: Dropped) -> None:
        self._append(self.dropped_path, dropped)

    def all_dropped(self) -> list[Dropped]:
        if not self.dropped_path.is_file():
            return []
        return [Dropped.model_validate(r) for r in iter_jsonl(self.dropped_path, on_bad_line="skip")]

    def dropped(self) -> list[Dropped]:
        """Where each dropped item finally stands: the last record per (stage, id), minus items that
        a later run got through after a transient failure."""
        passed: dict[str, set[str]] = {}
        latest: dict[tuple[str, str], Dropped] = {}
        for d in self.all_dropped():
            latest[(d.stage, d.id)] = d
        out = []
        for (stage, item), d in latest.items():
            if stage not in passed:
                passed[stage] = {r["id"] for r in self.records(stage) if "id" in r}
            if item not in passed[stage]:
                out.append(d)
        return out

    def done_ids(self, stage: str) -> set[str]:
        """Ids that `stage` has finished: passed, or dropped for a reason that a retry won't change."""
        done = {r["id"] for r in self.records(stage) if "id" in r}
        done |= {d.id for d in self.all_dropped() if d.stage == stage and not d.transient}
        return done

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
