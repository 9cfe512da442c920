"""GAIA (gaia-benchmark/GAIA, gated): load `metadata.jsonl` or `metadata.parquet` and its files.

Rows have `task_id`, `Question`, `Level` (1-3), `Final answer` (hidden on the test split),
`file_name` (in the same folder) and `Annotator Metadata`. Older copies keep them under
`2023/{validation,test}/metadata.jsonl`; newer ones as `metadata.parquet`. No GAIA data is ever
bundled: the user supplies the folder, or a hub token with access to download it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from t3edge.errors import BadInput
from t3edge.eval.items import schema_error
from t3edge.jsonl import iter_jsonl
from t3edge.trajectory import Attachment, Task

HUB_REPO = "gaia-benchmark/GAIA"
_HINT = "expected GAIA's metadata.jsonl or metadata.parquet (columns task_id, Question, Level, Final answer, file_name)"
_UNKNOWN = {"", "?"}


class _Row(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    task_id: str
    question: str = Field(alias="Question")
    level: int = Field(alias="Level")
    final_answer: str | None = Field(None, alias="Final answer")
    file_name: str | None = None

    @field_validator("final_answer", "file_name", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return value

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        return int(value) if isinstance(value, str) and value.strip().isdigit() else value


class GAIAItem(BaseModel):
    id: str
    index: int
    question: str
    level: int
    final_answer: str | None
    file: str | None = None

    @property
    def has_answer(self) -> bool:
        """False on the test split, whose answers are hidden."""
        return self.final_answer is not None and self.final_answer.strip() not in _UNKNOWN

    def task(self) -> Task:
        attachments = [Attachment.from_path(self.file)] if self.file else []
        return Task(id=self.id, query=self.question, attachments=attachments)


def find_metadata(data: Path, split: str = "validation") -> Path:
    """metadata.parquet or .jsonl in `data`, or in `data/2023/<split>` / `data/<split>`."""
    if data.is_file() and data.name.startswith("metadata"):
        return data
    if not data.is_dir():
        raise BadInput(f"{data} is a file, not the GAIA data folder" if data.exists() else
                       f"GAIA data folder not found: {data}",
                       hint="pass the folder holding metadata.jsonl/.parquet, or --token to download it")
    for folder in (data, data / "2023" / split, data / split):
        for name in ("metadata.parquet", "metadata.jsonl"):
            if (folder / name).is_file():
                return folder / name
    raise BadInput(f"no metadata.parquet or metadata.jsonl in {data} (nor in 2023/{split})", hint=_HINT)


def _rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pandas as pd

        try:
            frame = pd.read_parquet(path)
        except (ImportError, ValueError, OSError) as exc:
            raise BadInput(f"{path}: cannot read parquet ({exc})", hint="pip install pyarrow") from exc
        return frame.to_dict(orient="records")
    return list(iter_jsonl(path, on_bad_line="raise"))


def load_gaia(data: str | Path, split: str = "validation") -> list[GAIAItem]:
    """Every row of a GAIA split, in file order; attached files must exist next to the metadata."""
    path = find_metadata(Path(data), split).resolve()
    items = []
    for index, obj in enumerate(_rows(path)):
        try:
            row = _Row.model_validate(obj)
        except ValidationError as exc:
            raise schema_error(str(path), f"#{index + 1} ({obj.get('task_id', '?')})", exc, _HINT) from exc
        file = None
        if row.file_name:
            file_path = path.parent / row.file_name
            if not file_path.is_file():
                raise BadInput(
                    f"{path}: item {row.task_id}: field 'file_name': {row.file_name} not found in {path.parent}",
                    hint="attached files must sit next to the metadata file")
            file = str(file_path)
        items.append(GAIAItem(id=row.task_id, index=index, question=row.question, level=row.level,
                              final_answer=None if row.final_answer is None else str(row.final_answer),
                              file=file))
    return items


def fetch_gaia(dest: Path, token: str | None, split: str = "validation", repo: str = HUB_REPO) -> Path:
    """Download one GAIA split with a token that has accepted its terms (online only)."""
    from t3edge.eval.hub import fetch_dataset

    root = fetch_dataset(repo, dest, what="GAIA", token=token, allow_patterns=[f"2023/{split}/*"])
    return find_metadata(root, split).parent
