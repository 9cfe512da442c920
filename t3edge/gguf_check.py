"""Validate a GGUF file before llama.cpp sees it.

llama.cpp aborts the whole process (GGML_ASSERT) on a malformed file instead of raising, so
every GGUF is read here first: the header, every metadata key and value, the tensor table, and
that each tensor's data lies inside the file at an aligned offset with the size its type and
shape imply, without overlaps. A bad file raises `BadInput` saying what is wrong.

The result (`GGUFInfo`) is also what `t3edge convert inspect` prints.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from t3edge.errors import BadInput

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
_MAX_STRING = 1 << 28  # 256 MiB: a chat template or a token is never that long
_MAX_COUNT = 1 << 32   # sanity cap on array lengths and table sizes

# GGUF metadata value types: id -> (struct format, size) for scalars
_SCALARS: dict[int, tuple[str, int]] = {
    0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
    6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8),
}
_STRING, _ARRAY = 8, 9


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # ggml order: ne0 (innermost) first
    type_name: str
    offset: int  # absolute, in the file
    nbytes: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass
class GGUFInfo:
    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: list[TensorInfo] = field(default_factory=list)
    data_offset: int = 0
    file_size: int = 0

    @property
    def architecture(self) -> str | None:
        arch = self.metadata.get("general.architecture")
        return arch if isinstance(arch, str) else None

    @property
    def kind(self) -> str:
        """'model', 'mmproj' or 'adapter' (from general.type; 'clip' arch means mmproj)."""
        t = self.metadata.get("general.type")
        if isinstance(t, str) and t:
            return t
        return "mmproj" if self.architecture == "clip" else "model"

    def type_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tensors:
            out[t.type_name] = out.get(t.type_name, 0) + 1
        return out


class _Reader:
    """Bounds-checked little-endian reads from a file of known size."""

    def __init__(self, f: BinaryIO, size: int, path: Path) -> None:
        self.f, self.size, self.path = f, size, path

    def fail(self, what: str) -> BadInput:
        return BadInput(f"{self.path}: not a valid GGUF file: {what}",
                        hint="the file is corrupt or truncated; download or convert it again")

    def read(self, n: int, what: str) -> bytes:
        pos = self.f.tell()
        if n < 0 or pos + n > self.size:
            raise self.fail(f"{what} runs past the end of the file (offset {pos}, {n} bytes, "
                            f"file size {self.size})")
        data = self.f.read(n)
        if len(data) != n:
            raise self.fail(f"short read of {what}")
        return data

    def scalar(self, vtype: int, what: str) -> Any:
        fmt, n = _SCALARS[vtype]
        return struct.unpack(fmt, self.read(n, what))[0]

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self.read(4, what))[0]

    def u64(self, what: str) -> int:
        return struct.unpack("<Q", self.read(8, what))[0]

    def string(self, what: str) -> str:
        n = self.u64(f"length of {what}")
        if n > _MAX_STRING:
            raise self.fail(f"{what} claims a length of {n} bytes")
        raw = self.read(n, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not valid UTF-8") from None

    def skip(self, n: int, what: str) -> None:
        pos = self.f.tell()
        if pos + n > self.size:
            raise self.fail(f"{what} runs past the end of the file")
        self.f.seek(pos + n)


def _value(r: _Reader, vtype: int, key: str, keep_arrays: int) -> Any:
    if vtype in _SCALARS:
        return r.scalar(vtype, f"value of {key}")
    if vtype == _STRING:
        return r.string(f"value of {key}")
    if vtype != _ARRAY:
        raise r.fail(f"metadata key {key!r} has unknown value type {vtype}")
    etype = r.u32(f"element type of {key}")
    count = r.u64(f"length of {key}")
    if count > _MAX_COUNT:
        raise r.fail(f"array {key!r} claims {count} elements")
    if etype in _SCALARS:
        size = _SCALARS[etype][1]
        if count <= keep_arrays:
            fmt = "<" + _SCALARS[etype][0][1] * count
            return list(struct.unpack(fmt, r.read(size * count, f"array {key}")))
        r.skip(size * count, f"array {key}")
        return _Elided(count, "numbers")
    if etype == _STRING:
        items = [r.string(f"element {i} of {key}") for i in range(count)]
        return items if count <= keep_arrays else _Elided(count, "strings")
    raise r.fail(f"array {key!r} has unsupported element type {etype}")


@dataclass(frozen=True)
class _Elided:
    """A long metadata array, validated but not kept (e.g. the token list)."""

    count: int
    kind: str

    def __repr__(self) -> str:
        return f"[{self.count} {self.kind}]"


def _type_table() -> dict[int, tuple[str, int, int]]:
    """ggml type id -> (name, block size, bytes per block), from the gguf package."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    return {int(t): (t.name, *GGML_QUANT_SIZES[t]) for t in GGMLQuantizationType if t in GGML_QUANT_SIZES}


def check_gguf(path: str | Path, *, keep_arrays: int = 64,
               expect_kind: str | None = None) -> GGUFInfo:
    """Read and validate `path`; return its GGUFInfo or raise BadInput.

    `expect_kind` ('model', 'mmproj' or 'adapter') also checks what the file is for.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"GGUF file not found: {path}", hint="check the path")
    size = os.path.getsize(path)
    types = _type_table()
    with open(path, "rb") as f:
        r = _Reader(f, size, path)
        if size < 24 or r.read(4, "magic") != GGUF_MAGIC:
            raise r.fail("missing the GGUF magic bytes")
        version = r.u32("version")
        if version not in SUPPORTED_VERSIONS:
            raise r.fail(f"unsupported GGUF version {version} (supported: 2, 3)")
        n_tensors = r.u64("tensor count")
        n_kv = r.u64("metadata count")
        if n_tensors > _MAX_COUNT or n_kv > _MAX_COUNT:
            raise r.fail(f"implausible table sizes ({n_tensors} tensors, {n_kv} keys)")
        metadata: dict[str, Any] = {}
        for i in range(n_kv):
            key = r.string(f"metadata key #{i}")
            vtype = r.u32(f"type of {key}")
            if key in metadata:
                raise r.fail(f"duplicate metadata key {key!r}")
            metadata[key] = _value(r, vtype, key, keep_arrays)
        alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise r.fail(f"general.alignment must be a power of two, got {alignment!r}")
        raw: list[tuple[str, tuple[int, ...], int, int]] = []
        names: set[str] = set()
        for i in range(n_tensors):
            name = r.string(f"name of tensor #{i}")
            if name in names:
                raise r.fail(f"duplicate tensor name {name!r}")
            names.add(name)
            n_dims = r.u32(f"dimension count of {name}")
            if not 1 <= n_dims <= MAX_DIMS:
                raise r.fail(f"tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
            shape = tuple(r.u64(f"dimension {d} of {name}") for d in range(n_dims))
            if any(d <= 0 for d in shape):
                raise r.fail(f"tensor {name!r} has an empty or negative dimension {shape}")
            ttype = r.u32(f"type of {name}")
            offset = r.u64(f"offset of {name}")
            raw.append((name, shape, ttype, offset))
        header_end = f.tell()
    data_offset = (header_end + alignment - 1) // alignment * alignment
    tensors: list[TensorInfo] = []
    for name, shape, ttype, offset in raw:
        if ttype not in types:
            raise r.fail(f"tensor {name!r} has unknown type id {ttype}")
        type_name, block, block_bytes = types[ttype]
        if shape[0] % block:
            raise r.fail(f"tensor {name!r}: first dimension {shape[0]} is not a multiple of the "
                         f"{type_name} block size {block}")
        n = 1
        for d in shape:
            n *= d
        nbytes = n // block * block_bytes
        if offset % alignment:
            raise r.fail(f"tensor {name!r} data offset {offset} is not aligned to {alignment}")
        start = data_offset + offset
        if start + nbytes > size:
            raise r.fail(f"tensor {name!r} data ({nbytes} bytes at {start}) runs past the end of "
                         f"the file ({size} bytes): truncated")
        tensors.append(TensorInfo(name, shape, type_name, start, nbytes))
    ordered = sorted(tensors, key=lambda t: t.offset)
    for a, b in zip(ordered, ordered[1:]):
        if a.offset + a.nbytes > b.offset:
            raise r.fail(f"tensors {a.name!r} and {b.name!r} overlap")
    info = GGUFInfo(path=path, version=version, metadata=metadata, tensors=tensors,
                    data_offset=data_offset, file_size=size)
    _check_semantics(info, r, expect_kind)
    return info


def _check_semantics(info: GGUFInfo, r: _Reader, expect_kind: str | None) -> None:
    arch = info.architecture
    if arch is None:
        raise r.fail("general.architecture is missing")
    if expect_kind is not None and info.kind != expect_kind:
        raise BadInput(f"{info.path} is a GGUF {info.kind}, expected a {expect_kind}",
                       hint=_KIND_HINTS.get(expect_kind))
    if info.kind == "model":
        if not info.tensors:
            raise r.fail("a model file with no tensors")
        if "tokenizer.ggml.tokens" not in info.metadata:
            raise r.fail("the model has no tokenizer (tokenizer.ggml.tokens is missing)")
        if f"{arch}.block_count" not in info.metadata:
            raise r.fail(f"{arch}.block_count is missing")
    elif info.kind == "mmproj" and "clip.projector_type" not in info.metadata:
        raise r.fail("a vision projector without clip.projector_type")
    elif info.kind == "adapter":
        if info.metadata.get("adapter.type") != "lora":
            raise r.fail("an adapter whose adapter.type is not 'lora'")
        names = {t.name for t in info.tensors}
        for name in names:
            if name.endswith(".lora_a") and name[:-1] + "b" not in names:
                raise r.fail(f"LoRA tensor {name!r} has no matching lora_b")


_KIND_HINTS = {
    "model": "pass the text-model GGUF, not the mmproj or a LoRA",
    "mmproj": "pass the vision projector (mmproj-*.gguf) as the mmproj",
    "adapter": "pass a GGUF LoRA adapter (t3edge convert lora to-gguf)",
}


def check_lora_fits(model: GGUFInfo, adapter: GGUFInfo) -> None:
    """Raise BadInput unless every LoRA pair in `adapter` matches a tensor of `model`."""
    if adapter.architecture != model.architecture:
        raise BadInput(f"{adapter.path} is a LoRA for {adapter.architecture}, the model is "
                       f"{model.architecture}", hint="convert the adapter against this base model")
    base = {t.name: t.shape for t in model.tensors}
    parts = {t.name: t.shape for t in adapter.tensors}
    for name, a in parts.items():
        if not name.endswith(".lora_a"):
            continue
        target = name[: -len(".lora_a")]
        b = parts[target + ".lora_b"]
        if target not in base:
            raise BadInput(f"{adapter.path}: LoRA targets {target!r}, which the model does not have",
                           hint="the adapter was made for another model")
        w = base[target]
        if len(a) != 2 or len(b) != 2 or a[0] != w[0] or b[1] != w[1] or a[1] != b[0]:
            raise BadInput(
                f"{adapter.path}: LoRA for {target!r} has shapes a={a}, b={b} that do not fit the "
                f"model's {w} (ggml order)", hint="the adapter was trained on a different base model")
