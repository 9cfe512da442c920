"""Export: the kept tasks as MM-Traj training records with a train / valid split.

    OUT/train.jsonl, OUT/valid.jsonl   released MM-Traj records (t3edge.mmtraj.to_mmtraj)
    OUT/trajectories.jsonl             the same tasks in t3edge's richer trajectory format
    OUT/files/<id>/                    each task's files; MM-Traj image paths, and every path in
                                       the conversations, are relative to OUT

The split is by a hash of the task id, so it is stable when a run grows or is resumed. OUT is
rebuilt from the run each time (written to a temporary folder, then swapped in).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from pydantic import BaseModel

from synth.items import SynthItem
from synth.store import RunStore
from t3edge.errors import T3Error
from t3edge.jsonl import JsonlWriter
from t3edge.mmtraj import to_mmtraj
from t3edge.trajectory import Trajectory


class ExportReport(BaseModel):
    out: str
    train: int
    valid: int


def is_valid_split(task_id: str, valid_fraction: float) -> bool:
    value = int(hashlib.sha256(task_id.encode()).hexdigest()[:8], 16) / 0x100000000
    return value < valid_fraction


def _relocated(item: SynthItem, staging: Path, final: Path) -> Trajectory:
    """The trajectory with every file copied under files/<id>/ and every mention of its old path
    (task message, code, observations) rewritten relative to the export folder; attachment paths
    point at the copies in `final` (where the staging folder ends up)."""
    assert item.trajectory is not None
    text = item.trajectory.model_dump_json()
    (staging / "files" / item.id).mkdir(parents=True, exist_ok=True)
    relatives = []
    for attachment in item.trajectory.task.attachments:
        source = Path(attachment.path)
        relative = f"files/{item.id}/{source.name}"
        shutil.copyfile(source, staging / relative)
        text = text.replace(json.dumps(attachment.path)[1:-1], json.dumps(relative)[1:-1])
        relatives.append(relative)
    traj = Trajectory.model_validate_json(text)
    for attachment, relative in zip(traj.task.attachments, relatives, strict=True):
        attachment.path = str(final / relative)
    return traj


def export(store: RunStore, out: Path, valid_fraction: float) -> ExportReport:
    items = sorted(store.items("filter"), key=lambda i: i.id)
    if not items:
        raise T3Error("no task has passed the filter yet", hint="run the earlier stages first")
    final = out.resolve()
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    counts = {"train": 0, "valid": 0}
    with JsonlWriter(tmp / "train.jsonl") as train, JsonlWriter(tmp / "valid.jsonl") as valid, \
            JsonlWriter(tmp / "trajectories.jsonl") as rich:
        for item in items:
            traj = _relocated(item, tmp, final)
            split = "valid" if is_valid_split(item.id, valid_fraction) else "train"
            (valid if split == "valid" else train).write(to_mmtraj(traj, root=final).dump())
            rich.write(traj.model_copy(update={"meta": {**traj.meta, "split": split}}))
            counts[split] += 1
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return ExportReport(out=str(final), **counts)
