"""`t3edge run --continue`: a follow-up task continues an earlier run's chat."""

from __future__ import annotations

import subprocess
from pathlib import Path

from t3edge.trajectory import read_trajectories

SCRIPT = 'Thought: done.\nCode:\n```py\nfinal_answer("three cats")\n```<end_action>\n'


def t3(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["t3edge", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_follow_up_continues_the_last_run_in_its_workspace(tmp_path: Path) -> None:
    (tmp_path / "script.txt").write_text(SCRIPT)
    first = t3("run", "How many cats?", "--model", "replay:script.txt", "--out", "runs.jsonl", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second = t3("run", "And how many are red?", "--model", "replay:script.txt", "--out", "runs.jsonl",
                "--continue", "last", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    a, b = read_trajectories(tmp_path / "runs.jsonl")
    assert b.meta["continues"] == [a.task.id]
    assert b.meta["workspace"] == a.meta["workspace"] and b.system_prompt == a.system_prompt
    third = t3("run", "And blue?", "--model", "replay:script.txt", "--out", "runs.jsonl",
               "--continue", b.task.id, cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert list(read_trajectories(tmp_path / "runs.jsonl"))[-1].meta["continues"] == [a.task.id, b.task.id]


def test_continuing_an_unknown_run_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "script.txt").write_text(SCRIPT)
    missing = t3("run", "x", "--model", "replay:script.txt", "--out", "none.jsonl", "--continue", "last", cwd=tmp_path)
    assert missing.returncode == 1 and missing.stderr.startswith("error: no runs to continue in none.jsonl")
    t3("run", "q", "--model", "replay:script.txt", "--out", "runs.jsonl", cwd=tmp_path)
    wrong = t3("run", "x", "--model", "replay:script.txt", "--out", "runs.jsonl", "--continue", "nope", cwd=tmp_path)
    assert wrong.returncode == 1 and wrong.stderr.strip() == (
        "error: no run 'nope' in runs.jsonl (use the task id that `t3edge run` printed, or --continue last)")
