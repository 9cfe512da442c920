"""The README's commands are the ones that work: its first look runs, in order, as written, and
its set-up commands are the ones CI runs."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
PRINTS = re.compile(r'\s+#\s*prints\s+"([^"]+)"\s*$')


def first_look() -> list[tuple[str, str | None]]:
    """(command, text it prints) for each line of the README's first-look block."""
    block = README.split("<!-- first-look", 1)[1].split("<!-- /first-look -->", 1)[0]
    code = block.split("```bash\n", 1)[1].split("```", 1)[0]
    out = []
    for line in code.strip().splitlines():
        m = PRINTS.search(line)
        out.append((line[: m.start()] if m else line, m.group(1) if m else None))
    return out


def setup_commands() -> list[str]:
    block = README.split("## Set up", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]


def test_ci_runs_the_readme_set_up_commands() -> None:
    install, test = setup_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert install.startswith("pip install") and install in ci
    assert test == "pytest" and test in ci
    assert any("venv" in line for line in ci), "CI installs into a fresh virtual environment"
    assert (ROOT / install.split("-c ", 1)[1].split()[0]).is_file(), "the constraints file exists"


@pytest.mark.real
@pytest.mark.slow
def test_the_first_look_runs_as_written(tmp_path: Path) -> None:
    steps = first_look()
    assert len(steps) >= 3 and sum(expected is not None for _, expected in steps) >= 3
    for command, expected in steps:
        assert shlex.split(command), command
        done = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                              check=False)
        said = done.stdout + done.stderr
        assert done.returncode == 0, f"{command}\n{said[-3000:]}"
        assert "Traceback" not in said, said[-3000:]
        if expected is not None:
            assert expected in said, f"{command} did not print {expected!r}:\n{said[-3000:]}"


def test_the_offline_synthesis_servers_are_installed() -> None:
    """What the README's offline synthesis commands start: llama-cpp-python's server and its launcher."""
    for module in ("llama_cpp.server", "t3edge.backends.llama_server"):
        done = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0 and "--model" in done.stdout, (module, done.stderr[-2000:])
