"""Model-written code that makes a task's file runs in the agent's sandbox (a confined child
process whose file view is the task's folder), with the imports that document libraries need."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from t3edge.agent.config import DEFAULT_IMPORTS, AgentConfig
from t3edge.agent.executor import Sandbox
from t3edge.tools.base import ToolSet

FILE_IMPORTS = ["openpyxl", "docx", "csv", "zipfile", "io", "textwrap", "random", "string", "xml", "html"]


def _mime_tables() -> list[Path]:
    """The system MIME tables that `mimetypes` reads on import (openpyxl and docx import it)."""
    return [Path(p) for p in mimetypes.knownfiles if Path(p).is_file()]


def run_file_code(code: str, folder: Path, timeout_s: float) -> str | None:
    """Run `code` with `folder` as its working folder; the error it ended with, or None."""
    config = AgentConfig(step_timeout_s=timeout_s, max_steps=1,
                         allowed_imports=[*DEFAULT_IMPORTS, *FILE_IMPORTS])
    with Sandbox(ToolSet(), folder, read_files=_mime_tables(), config=config) as box:
        result = box.run(code)
    return result.error
