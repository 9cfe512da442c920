"""Append-safe JSONL: the exchange format of trajectories, evaluation records, synthesis stages
and ledgers. A killed writer leaves at most one torn last line, which readers report and skip."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from t3edge.errors import BadInput, T3Error


class JsonlWriter:
    """Appends one JSON object per line; each record is one `write` of a complete line.

    A writer killed mid-record leaves at most one partial last line. Opening a file whose last
    line is partial first ends that line, so the next record never fuses with it; readers report
    and skip it.
    """

    def __init__(self, path: str | Path, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._fh = open(self.path, "ab")
        if self._fh.tell() > 0 and not _ends_with_newline(self.path):
            self._fh.write(b"\n")
            self._fh.flush()

    def write(self, record: BaseModel | dict[str, Any]) -> None:
        data = record.model_dump(mode="json") if isinstance(record, BaseModel) else record
        line = json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n"
        self._fh.write(line.encode("utf-8"))
        self._fh.flush()
        if self._fsync:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


class BadLine(UserWarning):
    """A JSONL line that could not be read; it is skipped."""


def iter_jsonl(path: str | Path, *, on_bad_line: str = "warn") -> Iterator[dict[str, Any]]:
    """Yield each JSON object of a JSONL file; bad lines are reported (warning) and skipped.

    `on_bad_line`: "warn" (default), "skip" (silently) or "raise".
    """
    p = Path(path)
    if not p.is_file():
        raise T3Error(f"no such JSONL file: {p}")
    with open(p, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
                if not isinstance(obj, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                if on_bad_line == "raise":
                    raise BadInput(f"{p}:{lineno}: unreadable line ({exc})",
                                   hint="each line must be one JSON object; fix or remove that line") from exc
                msg = f"{p}:{lineno}: skipped an unreadable line ({exc}); a run killed mid-write leaves one"
                if on_bad_line == "warn":
                    warnings.warn(msg, BadLine, stacklevel=2)
                continue
            yield obj
