"""Tools: plain typed functions registered by `@tool`, which derives the name, the description and
the argument schema (rendered into the system prompt) from the signature and the docstring.

A tool's first parameter is a `ToolContext`: what it may use (the backend for visual questions,
the run's workspace folder, the files it may read, whether it may go online). Tools run in the
agent's own process; sandboxed code reaches them by name through `ToolSet.call`, which checks the
arguments first, so bad input always becomes a `ToolError` (an error observation), never a crash.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t3edge.errors import T3Error
from t3edge.trajectory import safe_name

if typing.TYPE_CHECKING:
    from t3edge.backends.base import Backend, GenerationConfig


class ToolError(T3Error):
    """A tool could not do what was asked (bad argument, unreadable file, missing extra)."""


@dataclass
class ToolContext:
    """What tools may use during one run. Paths the code gives are checked against it."""

    workspace: Path
    backend: Backend | None = None
    allowed_files: list[Path] = field(default_factory=list)
    web: bool = False
    generation: GenerationConfig | None = None
    produced: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workspace = Path(self.workspace).resolve()
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.allowed_files = [Path(p).resolve() for p in self.allowed_files]

    def input_path(self, path: str | Path, *, what: str = "file") -> Path:
        """A readable input: inside the workspace, or one of the attached files.

        Relative paths are looked up in the workspace, then among the attachments by name.
        """
        if not isinstance(path, (str, Path)) or not str(path).strip():
            raise ToolError(f"expected the path of a {what} as a string, got {type(path).__name__}")
        raw = Path(str(path).strip()).expanduser()
        candidates = [raw] if raw.is_absolute() else [self.workspace / raw] + [
            f for f in self.allowed_files if f.name == raw.name
        ]
        for cand in candidates:
            resolved = cand.resolve()
            if resolved in self.allowed_files or _inside(resolved, self.workspace):
                if not resolved.exists():
                    continue
                if not resolved.is_file():
                    raise ToolError(f"{path} is not a file")
                return resolved
            if raw.is_absolute():
                raise ToolError(
                    f"{path} is outside the working folder and not an attached file; "
                    "only the attachments and files in the working folder can be used"
                )
        raise ToolError(f"{what} not found: {path}")

    def output_path(self, stem: str, suffix: str) -> Path:
        """A new file name in the workspace (`stem.suffix`, numbered if taken); recorded as produced."""
        stem = safe_name(stem, "output")
        out = self.workspace / f"{stem}{suffix}"
        n = 1
        while out.exists():
            out = self.workspace / f"{stem}_{n}{suffix}"
            n += 1
        self.produced.append(str(out))
        return out

    def require_backend(self, tool_name: str) -> Backend:
        if self.backend is None:
            raise ToolError(f"{tool_name} needs a loaded model, and none was given to the tools")
        return self.backend


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


@dataclass(frozen=True)
class ToolInput:
    name: str
    type: str
    description: str
    required: bool
    default: Any = None


_PY_TO_TYPE = {str: "str", int: "int", float: "float", bool: "bool", list: "list", dict: "dict",
               tuple: "list", type(None): "None"}


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = typing.get_args(annotation)
        base = _PY_TO_TYPE.get(origin, getattr(origin, "__name__", str(origin)))
        return f"{base}[{', '.join(_type_name(a) for a in args)}]" if args else base
    return _PY_TO_TYPE.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _accepts(annotation: Any, value: Any) -> bool:
    """Whether `value` fits `annotation` (ints pass as floats; containers checked shallowly)."""
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(a, value) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    base = origin or annotation
    if base in (list, tuple):
        return isinstance(value, (list, tuple))
    return isinstance(value, base) if isinstance(base, type) else True


def _docstring_parts(doc: str) -> tuple[str, dict[str, str]]:
    """The description (text before `Args:`) and each argument's line from `Args:`."""
    doc = inspect.cleandoc(doc or "")
    head, _, args_block = doc.partition("\nArgs:")
    described: dict[str, str] = {}
    current: str | None = None
    for line in args_block.splitlines():
        m = re.match(r"\s{0,8}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)", line)
        if m and (current is None or not line.startswith(" " * 8)):
            current = m.group(1)
            described[current] = m.group(2).strip()
        elif current and line.strip():
            described[current] += " " + line.strip()
    return " ".join(head.split()), described


@dataclass(frozen=True)
class Tool:
    """A registered tool: its schema and the function behind it."""

    name: str
    description: str
    inputs: tuple[ToolInput, ...]
    output_type: str
    func: Callable[..., Any]
    needs_vision: bool = False  # answered by the loaded model looking at an image

    def signature(self) -> str:
        parts = []
        for inp in self.inputs:
            default = "" if inp.required else f" = {inp.default!r}"
            parts.append(f"{inp.name}: {inp.type}{default}")
        return f"{self.name}({', '.join(parts)}) -> {self.output_type}"

    def bind(self, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Positional and keyword arguments as one checked dict; a ToolError says what is wrong."""
        names = [i.name for i in self.inputs]
        if len(args) > len(names):
            raise ToolError(f"{self.name} takes at most {len(names)} arguments ({self.signature()})")
        bound = dict(zip(names, args))
        for key, value in kwargs.items():
            if key not in names:
                raise ToolError(f"{self.name} has no argument {key!r}; its signature is {self.signature()}")
            if key in bound:
                raise ToolError(f"{self.name} got two values for {key!r}")
            bound[key] = value
        hints = typing.get_type_hints(self.func)
        for inp in self.inputs:
            if inp.name not in bound:
                if inp.required:
                    raise ToolError(f"{self.name} is missing the argument {inp.name!r} ({self.signature()})")
                bound[inp.name] = inp.default
            elif not _accepts(hints.get(inp.name, Any), bound[inp.name]):
                raise ToolError(
                    f"{self.name}: argument {inp.name!r} should be {inp.type}, "
                    f"got {type(bound[inp.name]).__name__}"
                )
        return bound

    def __call__(self, ctx: ToolContext, *args: Any, **kwargs: Any) -> Any:
        return self.func(ctx, **self.bind(args, kwargs))


def tool(func: Callable[..., Any] | None = None, *, name: str | None = None,
         output_type: str | None = None, needs_vision: bool = False) -> Any:
    """Register a function `f(ctx: ToolContext, arg: type, ...) -> T` as a Tool (`needs_vision`:
    it asks the loaded model about an image)."""

    def wrap(f: Callable[..., Any]) -> Tool:
        sig = inspect.signature(f)
        hints = typing.get_type_hints(f)
        params = list(sig.parameters.values())
        if not params or hints.get(params[0].name) is not ToolContext:
            raise TypeError(f"tool {f.__name__}: the first parameter must be `ctx: ToolContext`")
        description, arg_docs = _docstring_parts(f.__doc__ or "")
        if not description:
            raise TypeError(f"tool {f.__name__} needs a docstring")
        inputs = []
        for p in params[1:]:
            if p.name not in hints:
                raise TypeError(f"tool {f.__name__}: argument {p.name} needs a type hint")
            required = p.default is inspect.Parameter.empty
            inputs.append(ToolInput(
                name=p.name, type=_type_name(hints[p.name]), description=arg_docs.get(p.name, ""),
                required=required, default=None if required else p.default,
            ))
        out = output_type or _type_name(hints.get("return", Any))
        return Tool(name=name or f.__name__, description=description, inputs=tuple(inputs),
                    output_type=out, func=f, needs_vision=needs_vision)

    return wrap(func) if func is not None else wrap


class ToolSet:
    """An ordered set of tools, optionally bound to a ToolContext; callable by name."""

    def __init__(self, tools: Sequence[Tool] = (), ctx: ToolContext | None = None) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.add(t)
        self.ctx = ctx

    def add(self, t: Tool) -> None:
        if t.name in self._tools:
            raise ValueError(f"two tools named {t.name!r}")
        self._tools[t.name] = t

    def with_context(self, ctx: ToolContext) -> ToolSet:
        """The same tools bound to another context (one per run)."""
        return ToolSet(list(self._tools.values()), ctx)

    def subset(self, names: Sequence[str]) -> ToolSet:
        unknown = [n for n in names if n not in self._tools]
        if unknown:
            raise T3Error(f"unknown tools: {', '.join(unknown)}", hint=f"known: {', '.join(self._tools)}")
        return ToolSet([self._tools[n] for n in names], self.ctx)

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    def call(self, name: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
             *, ctx: ToolContext | None = None) -> Any:
        """Call a tool by name with checked arguments. Failures raise ToolError."""
        ctx = ctx or self.ctx
        if ctx is None:
            raise T3Error("this ToolSet has no ToolContext", hint="use with_context(ctx) or pass ctx=")
        if name not in self._tools:
            raise ToolError(f"there is no tool named {name!r}; the tools are: {', '.join(self._tools)}")
        try:
            return self._tools[name](ctx, *args, **(kwargs or {}))
        except ToolError:
            raise
        except T3Error as exc:
            raise ToolError(str(exc)) from exc

    def describe(self) -> list[dict[str, Any]]:
        """Each tool's name, description, inputs and output type (for prompts and tool mapping)."""
        return [
            {
                "name": t.name, "description": t.description, "output_type": t.output_type,
                "inputs": {i.name: {"type": i.type, "description": i.description, "required": i.required}
                           for i in t.inputs},
            }
            for t in self
        ]
