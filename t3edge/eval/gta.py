"""GTA (open-compass/GTA): load a release folder (`dataset.json`, `toolmeta.json`, images).

`dataset.json` is an object keyed "0".."228"; each item has `tools`, `files` (paths relative to
the data root), `dialogs` (the user query, then assistant tool calls, tool results and the final
answer) and `gt_answer`: a dict `{whitelist, blacklist}` (objective), a list of reference strings
(subjective), or null (the query asks for an image).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from t3edge.errors import BadInput
from t3edge.eval.items import ToolCall, schema_error
from t3edge.trajectory import Attachment, Task

HUB_REPO = "Jize1/GTA"
_HINT = "expected the GTA release layout: dataset.json, toolmeta.json and the image folder"

Alias = str


def _aliases(value: Any) -> Any:
    """GTA aliases are strings; numbers written without quotes are read as their text."""
    if isinstance(value, list):
        return [[str(a) if isinstance(a, (int, float)) and not isinstance(a, bool) else a for a in g]
                if isinstance(g, list) else g for g in value]
    return value


class AnswerKey(BaseModel):
    """The objective answer: every whitelist group must match; no blacklist alias may."""

    whitelist: list[list[Alias]]
    blacklist: list[list[Alias]] | None = None

    @field_validator("whitelist", "blacklist", mode="before")
    @classmethod
    def _coerce(cls, value: Any) -> Any:
        return _aliases(value)


class _Function(BaseModel):
    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)


class _ToolCallRaw(BaseModel):
    function: _Function


class _Dialog(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["user", "assistant", "tool", "system"]
    content: Any = None
    tool_calls: list[_ToolCallRaw] | None = None


class _File(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = "image"
    path: str


class _Tool(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str


class _RawItem(BaseModel):
    model_config = ConfigDict(extra="allow")

    tools: list[_Tool] = Field(default_factory=list)
    files: list[_File] = Field(default_factory=list)
    dialogs: list[_Dialog]
    gt_answer: AnswerKey | list[str] | None


GTAKind = Literal["objective", "subjective", "image"]


class GTAItem(BaseModel):
    id: str
    index: int
    query: str
    files: list[str]
    tools: list[str]
    gt_answer: AnswerKey | list[str] | None
    reference_calls: list[ToolCall]

    @property
    def kind(self) -> GTAKind:
        """As GTA's scorer branches: a falsy key (null or []) is an image query."""
        if not self.gt_answer:
            return "image"
        return "objective" if isinstance(self.gt_answer, AnswerKey) else "subjective"

    def task(self) -> Task:
        return Task(id=self.id, query=self.query,
                    attachments=[Attachment.from_path(p) for p in self.files])


def find_root(data: Path) -> Path:
    """The folder holding dataset.json: `data` itself or one or two levels below it (or its
    dataset.json file)."""
    if data.is_file() and data.name == "dataset.json":
        return data.parent
    if not data.is_dir():
        raise BadInput(f"{data} is a file, not the GTA data folder" if data.exists() else
                       f"GTA data folder not found: {data}",
                       hint="pass the release folder with --data, or fetch it: t3edge eval fetch gta")
    if (data / "dataset.json").is_file():
        return data
    found = sorted(p.parent for p in [*data.glob("*/dataset.json"), *data.glob("*/*/dataset.json")])
    if not found:
        raise BadInput(f"no dataset.json in {data} (nor in its subfolders)", hint=_HINT)
    return found[0]


def load_toolmeta(root: Path) -> dict[str, dict[str, Any]]:
    path = root / "toolmeta.json"
    if not path.is_file():
        raise BadInput(f"no toolmeta.json next to {root / 'dataset.json'}", hint=_HINT)
    meta = _read_json(path)
    if not isinstance(meta, dict):
        raise BadInput(f"{path}: expected an object mapping tool names to their metadata", hint=_HINT)
    return meta


def load_gta(data: str | Path) -> list[GTAItem]:
    """Every item of a GTA release folder, in key order ("0", "1", ...)."""
    root = find_root(Path(data)).resolve()
    load_toolmeta(root)
    raw = _read_json(root / "dataset.json")
    if not isinstance(raw, dict):
        raise BadInput(f"{root / 'dataset.json'}: expected an object keyed by item id (\"0\", \"1\", ...)",
                       hint=_HINT)
    keys = sorted(raw, key=lambda k: (0, int(k)) if str(k).isdigit() else (1, str(k)))
    return [_item(root, key, i, raw[key]) for i, key in enumerate(keys)]


def _item(root: Path, key: str, index: int, obj: Any) -> GTAItem:
    source = str(root / "dataset.json")
    try:
        item = _RawItem.model_validate(obj)
    except ValidationError as exc:
        raise schema_error(source, repr(key), exc, _HINT) from exc
    users = [d for d in item.dialogs if d.role == "user"]
    if not users or not isinstance(users[0].content, str):
        raise BadInput(f"{source}: item {key!r}: field 'dialogs' has no user turn with a text query", hint=_HINT)
    files = []
    for f in item.files:
        path = root / f.path
        if not path.is_file():
            raise BadInput(f"{source}: item {key!r}: field 'files.path': {f.path} not found under {root}",
                           hint="the images must sit where dataset.json says")
        files.append(str(path))
    calls = [_reference_call(root, source, key, d) for d in item.dialogs if d.role == "assistant" and d.tool_calls]
    return GTAItem(
        id=str(key), index=index, query=users[0].content, files=files,
        tools=[t.name for t in item.tools], gt_answer=item.gt_answer, reference_calls=calls,
    )


def _reference_call(root: Path, source: str, key: str, dialog: _Dialog) -> ToolCall:
    """The first tool call of an assistant turn; argument values naming a data file made absolute."""
    assert dialog.tool_calls is not None
    fn = dialog.tool_calls[0].function
    args = fn.arguments
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError as exc:
            raise BadInput(f"{source}: item {key!r}: field 'tool_calls.function.arguments' is not JSON",
                           hint=_HINT) from exc
    fixed = {name: str(root / v) if isinstance(v, str) and v and (root / v).is_file() else v
             for name, v in args.items()}
    return ToolCall(name=fn.name, arguments=fixed)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise BadInput(f"{path}: not valid JSON ({exc})", hint=_HINT) from exc


def fetch_gta(dest: Path, repo: str = HUB_REPO) -> Path:
    """Download the public GTA release from the hub into `dest` (online only); a release shipped
    as a zip is unpacked there."""
    from t3edge.eval.hub import fetch_dataset, unpack_zips

    root = fetch_dataset(repo, dest, what="GTA")
    if not any(root.glob("dataset.json")) and not any(root.glob("*/dataset.json")):
        unpack_zips(root)
    return find_root(root)
