"""The run folder: `run.json` (what was run) and `results*.jsonl` (one record per finished item)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, ValidationError

from t3edge.errors import T3Error
from t3edge.eval.gaia_score import GAIAVerdict
from t3edge.eval.gta_score import GTAVerdict
from t3edge.eval.items import Benchmark, ToolCall
from t3edge.eval.tasks import TasksVerdict
from t3edge.jsonl import iter_jsonl
from t3edge.trajectory import Trajectory

RUN_FILE = "run.json"
RESULTS = "results.jsonl"

Verdict = Annotated[GTAVerdict | GAIAVerdict | TasksVerdict, Field(discriminator="benchmark")]


class Shard(BaseModel):
    """Shard `index` of `count`: the items whose position modulo `count` equals `index`."""

    index: int = Field(ge=0)
    count: int = Field(ge=1)

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            i, n = (int(x) for x in text.split("/"))
        except ValueError as exc:
            raise T3Error(f"bad shard {text!r}", hint="write it as i/n, e.g. 0/4 (i from 0 to n-1)") from exc
        if not 0 <= i < n:
            raise T3Error(f"bad shard {text!r}: need 0 <= i < n", hint="e.g. --shard 0/4 ... --shard 3/4")
        return cls(index=i, count=n)

    def holds(self, position: int) -> bool:
        return position % self.count == self.index

    @property
    def results_name(self) -> str:
        return f"results.shard-{self.index}-of-{self.count}.jsonl"


class RunInfo(BaseModel):
    """What a run folder holds: it must match when a run resumes or shards merge."""

    benchmark: Benchmark
    data: str
    data_sha256: str = ""  # of dataset.json / the metadata file: the same data on any machine
    model: str
    adapter: str | None = None
    limit: int | None = None
    split: str | None = None
    step_format: str | None = None  # agent.format of the run (None: recorded before formats existed)
    config: dict[str, Any] = Field(default_factory=dict)
    total: int = 0
    similarity: str = "not used"
    code_version: str = ""
    created_at: float = Field(default_factory=time.time)

    def identity(self) -> dict[str, Any]:
        return self.model_dump(include={"benchmark", "data_sha256", "model", "adapter", "limit", "split",
                                        "step_format"})


class EvalRecord(BaseModel):
    benchmark: Benchmark
    id: str
    index: int
    prediction: str | None
    verdict: Verdict
    tool_calls: list[ToolCall] | None = None
    trajectory: Trajectory | None = None
    seconds: float = 0.0

    def outcome(self) -> dict[str, Any]:
        """What the item's result is, without timings: equal across resumed, sharded and plain runs."""
        return {"id": self.id, "index": self.index, "prediction": self.prediction,
                "verdict": self.verdict.model_dump(), "tool_calls": self.tool_calls and
                [c.model_dump() for c in self.tool_calls]}


def code_version() -> str:
    """`git describe` of the source tree when it is a checkout, else the package version."""
    from t3edge import __version__

    root = Path(__file__).resolve().parents[2]
    if (root / ".git").exists():
        try:
            out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=root,
                                 capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return __version__
        if out.returncode == 0 and out.stdout.strip():
            return f"{__version__}+{out.stdout.strip()}"
    return __version__


def read_run_info(folder: Path) -> RunInfo:
    path = folder / RUN_FILE
    if not path.is_file():
        raise T3Error(f"{folder} is not an evaluation run (no {RUN_FILE})",
                      hint="give the --out folder of a `t3edge eval gta|gaia|tasks` run")
    try:
        return RunInfo.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        raise T3Error(f"{path}: not a run description ({exc.errors()[0]['msg']})") from exc


def write_run_info(folder: Path, info: RunInfo) -> RunInfo:
    """Create `run.json`, or check that an existing one describes the same run (resume)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RUN_FILE
    if path.is_file():
        old = read_run_info(folder)
        if old.identity() != info.identity():
            diff = {k: (old.identity()[k], v) for k, v in info.identity().items() if old.identity()[k] != v}
            what = ", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
            raise T3Error(f"{folder} holds another run ({what})",
                          hint="use another --out folder, or the same settings to resume it")
        return old
    tmp = path.with_suffix(".tmp")
    tmp.write_text(info.model_dump_json(indent=2), encoding="utf-8")
    tmp.replace(path)
    return info


def read_records(paths: Iterable[Path]) -> list[EvalRecord]:
    """Records of finished items (a torn last line from a killed run is skipped)."""
    records = []
    for path in paths:
        if not path.is_file():
            continue
        for obj in iter_jsonl(path, on_bad_line="skip"):
            try:
                records.append(EvalRecord.model_validate(obj))
            except ValidationError as exc:
                raise T3Error(f"{path}: a line is not an evaluation record ({exc.errors()[0]['msg']})",
                              hint="results files are written by t3edge eval; don't edit them") from exc
    return records


def result_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("results*.jsonl"))
