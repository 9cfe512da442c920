"""What a client sends to `t3edge serve`: an OpenAI chat-completions request, checked, with its
images and files saved where the agent can open them.

Images arrive as `image_url` parts holding a data URL (`data:image/png;base64,...`) or a path the
server may read (`file:///...` or an absolute path inside an allowed folder); other files as
OpenAI `file` parts (`{"file": {"filename": "a.pdf", "file_data": "data:...;base64,..."}}`). A
request the server cannot serve raises RequestError with the HTTP status and a message that says
what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import mimetypes
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from t3edge.backends.base import GenerationConfig, ImagePart, Message, Part, TextPart
from t3edge.errors import BadInput
from t3edge.images import load_image

RAW_SUFFIX = ":raw"  # a model name ending so asks for a plain generation, no agent
_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w-]+=[^;,]*)*)(?P<b64>;base64)?,(?P<data>.*)",
                       re.DOTALL)


class RequestError(Exception):
    """A request the server answers with an error: `status`, and a message for the client."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


class ImageURL(BaseModel):
    url: str
    detail: str | None = None


class FileData(BaseModel):
    filename: str = "file"
    file_data: str


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text", "image_url", "file", "input_text"]
    text: str | None = None
    image_url: ImageURL | str | None = None
    file: FileData | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    @property
    def text(self) -> str:
        """The message's text parts, joined by newlines."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "\n".join(p.text for p in self.content if p.type in ("text", "input_text") and p.text)


class CompletionRequest(BaseModel):
    """The fields of an OpenAI chat-completions request that t3edge uses (others are ignored), and
    its own: `t3edge_agent` (false: a plain generation), `t3edge_chat` (continue this chat id),
    `t3edge_max_steps` (fewer steps than the server's limit)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    t3edge_agent: bool | None = None
    t3edge_chat: str | None = None
    t3edge_max_steps: int | None = Field(None, ge=1)

    @property
    def agent(self) -> bool:
        """Whether the agent answers (else one plain generation)."""
        if self.t3edge_agent is not None:
            return self.t3edge_agent
        return not (self.model or "").endswith(RAW_SUFFIX)

    def generation(self, base: GenerationConfig, max_tokens_cap: int) -> GenerationConfig:
        """The sampling of a plain generation: the request's settings over `base`, tokens capped."""
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        asked = self.max_completion_tokens or self.max_tokens or base.max_tokens
        update: dict[str, Any] = {"max_tokens": min(asked, max_tokens_cap), "stop": stops, "grammar": None}
        for key in ("temperature", "top_p", "seed"):
            if getattr(self, key) is not None:
                update[key] = getattr(self, key)
        return base.model_copy(update=update)


def parse_request(body: bytes) -> CompletionRequest:
    """The request in `body`, or RequestError(400) saying what is wrong with it."""
    try:
        return CompletionRequest.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise RequestError(400, f"the body is not valid JSON: {first['msg']}") from exc
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise RequestError(400, f"{where}: {first['msg']}") from exc


class Uploads:
    """Where a request's images and files are saved (by content, so a file sent twice is kept
    once), and which folders the server may read paths from."""

    def __init__(self, folder: Path, allowed: Sequence[Path] = ()) -> None:
        self.folder = folder
        self.allowed = [Path(a).resolve() for a in allowed]

    def image(self, part: ContentPart) -> Path:
        url = part.image_url.url if isinstance(part.image_url, ImageURL) else part.image_url
        if not url:
            raise RequestError(400, "an image_url part has no url")
        if url.startswith("data:"):
            mime, data = _decode_data_url(url)
            path = self._save(data, _extension(mime, ".png"))
        elif url.startswith(("http://", "https://")):
            raise RequestError(400, "the server does not fetch images from the web: send the image as a data URL "
                                    "(data:image/png;base64,...)")
        else:
            path = self._readable(url.removeprefix("file://"))
        return path  # read (and refused if corrupt) when the task is made: t3edge.chat.new_task

    def file(self, part: ContentPart) -> Path:
        if part.file is None:
            raise RequestError(400, "a file part has no file")
        data = part.file.file_data
        if data.startswith("data:"):
            _, raw = _decode_data_url(data)
        else:
            try:
                raw = base64.b64decode(data, validate=True)
            except binascii.Error as exc:
                raise RequestError(400, "a file part's file_data is neither a data URL nor base64") from exc
        name = Path(part.file.filename).name or "file"
        return self._save(raw, Path(name).suffix or ".bin", name=name)

    def _readable(self, raw: str) -> Path:
        path = Path(raw)
        if not path.is_absolute():
            raise RequestError(400, f"image path {raw!r} is not absolute: send a data URL, or an absolute path "
                                    "inside a folder the server allows (--allow-path)")
        path = path.resolve()
        if not any(path.is_relative_to(folder) for folder in self.allowed):
            raise RequestError(403, f"the server may not read {path}: send the image as a data URL, or start the "
                                    "server with --allow-path for its folder", kind="permission_error")
        if not path.is_file():
            raise RequestError(400, f"no such file on the server: {path}")
        return path

    def _save(self, data: bytes, suffix: str, name: str | None = None) -> Path:
        digest = hashlib.sha256(data).hexdigest()[:16]
        folder = self.folder / digest
        path = folder / (name or f"image{suffix}")
        if not path.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return path


def _decode_data_url(url: str) -> tuple[str, bytes]:
    match = _DATA_URL.fullmatch(url)
    if match is None or not match["b64"]:
        raise RequestError(400, "a data URL must be base64: data:<type>;base64,<data>")
    try:
        return match["mime"] or "application/octet-stream", base64.b64decode(match["data"], validate=True)
    except binascii.Error as exc:
        raise RequestError(400, f"a data URL's base64 is malformed: {exc}") from exc


def _extension(mime: str, default: str) -> str:
    return {"image/jpeg": ".jpg", "image/jpg": ".jpg"}.get(mime) or mimetypes.guess_extension(mime) or default


def task_turn(message: ChatMessage, uploads: Uploads) -> tuple[str, list[Path]]:
    """The text of a user turn and the files it attached (saved or checked)."""
    files: list[Path] = []
    if isinstance(message.content, list):
        for part in message.content:
            if part.type == "image_url":
                files.append(uploads.image(part))
            elif part.type == "file":
                files.append(uploads.file(part))
    return message.text, files


def _readable_image(path: Path) -> str:
    """`path`, once it reads as an image (the agent's tasks are checked by `new_task` instead)."""
    try:
        load_image(path)
    except BadInput as exc:
        raise RequestError(400, str(exc)) from exc
    return str(path)


def backend_messages(messages: Sequence[ChatMessage], uploads: Uploads) -> list[Message]:
    """The conversation as backend messages, for a plain generation (tool turns as user turns)."""
    out: list[Message] = []
    for message in messages:
        role = {"developer": "system", "tool": "user"}.get(message.role, message.role)
        if isinstance(message.content, list):
            parts: list[Part] = []
            for part in message.content:
                if part.type == "image_url":
                    parts.append(ImagePart(_readable_image(uploads.image(part))))
                elif part.type in ("text", "input_text") and part.text:
                    parts.append(TextPart(part.text))
                elif part.type == "file":
                    raise RequestError(400, "file parts need the agent: a plain generation reads text and images only")
            out.append(Message(role, parts))  # type: ignore[arg-type]
        else:
            out.append(Message(role, message.content or ""))  # type: ignore[arg-type]
    return out
