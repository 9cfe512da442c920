"""The offline teacher: every family's reference solution, replayed through the real agent loop,
sandbox and tools, reaches its answer and is kept; wrong references are dropped with a reason;
a rerun resumes; the recorded system prompt is the student's (compact, text-only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from t3edge.agent import AgentConfig
from t3edge.agent.prompt import system_prompt
from t3edge.cli import cli
from t3edge.tasks import FAMILIES, HELD_OUT, load_tasks, make_tasks, read_manifest, teach
from t3edge.tasks.teacher import DROPPED
from t3edge.tools import default_tools
from t3edge.trajectory import read_trajectories

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def verified(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One task of every family, verified with the real OCR, face detector, editor and readers."""
    folder = tmp_path_factory.mktemp("teach") / "tasks"
    records = make_tasks(folder, "test", len(FAMILIES), seed=11)
    assert [r.family for r in records] == list(FAMILIES)
    return folder


@pytest.fixture(scope="module")
def taught(verified: Path) -> dict:
    records, problems = load_tasks(verified)
    assert problems == []
    out = verified.parent / "teach" / "trajectories.jsonl"
    first = teach(records[:2], verified, out, agent_config=AgentConfig())
    rest = teach(records, verified, out, agent_config=AgentConfig())
    return {"records": records, "out": out, "first": first, "rest": rest}


def test_every_family_reference_replays_to_its_answer(taught: dict) -> None:
    records, report = taught["records"], taught["rest"]
    assert taught["first"].kept == 2 and report.skipped == 2  # resumed: the first two were not run again
    assert report.kept == len(records) - 2 and report.dropped == {}, report
    trajectories = {t.task.id: t for t in read_trajectories(taught["out"])}
    assert set(trajectories) == {r.id for r in records}
    for r in records:
        t = trajectories[r.id]
        assert t.ended == "final_answer" and t.verdicts["trajectory"].correct
        assert len(t.steps) == len(r.reference) and all(s.error is None for s in t.steps)
        assert t.meta["family"] == r.family and t.meta["held_out"] == (r.family in HELD_OUT)
        called = {n for s in t.steps for n in s.tools_called}
        assert set(r.tools) <= called
    # the observations are the real tools' output
    ocr = next(r for r in records if r.family == "ocr_code")
    shown = trajectories[ocr.id].steps[0].observation
    words = ocr.answer if isinstance(ocr.answer, list) else [ocr.answer]
    assert all(w in shown for w in words)
    faces = next(r for r in records if r.family == "face_count")
    assert trajectories[faces.id].steps[0].observation.strip().endswith(str(faces.answer))


def test_the_recorded_prompt_is_the_students(taught: dict) -> None:
    trajectory = next(iter(read_trajectories(taught["out"])))
    compact_text_only = system_prompt(default_tools(), AgentConfig().allowed_imports, style="compact", vision=False)
    assert trajectory.system_prompt == compact_text_only
    assert "visualizer" not in trajectory.system_prompt and trajectory.images_shown is False


def test_wrong_references_are_dropped_with_a_reason_and_a_rerun_resumes(verified: Path, tmp_path: Path) -> None:
    records, _ = load_tasks(verified)
    csv = next(r for r in records if r.family == "csv_total")
    wrong = csv.model_copy(update={"answer": csv.answer + 1}).with_root(verified)
    broken_code = csv.model_copy(update={"id": "broken", "reference": [
        csv.reference[0].model_copy(update={"code": "print(undefined_name)"}), *csv.reference[1:]]}).with_root(verified)
    out = tmp_path / "t.jsonl"
    report = teach([wrong, broken_code], verified, out, agent_config=AgentConfig(), context_length=None, vision=True)
    assert report.kept == 0 and report.dropped == {"wrong_answer": 1, "step_error": 1}
    lines = [json.loads(line) for line in (tmp_path / DROPPED).read_text().splitlines()]
    assert [(d["id"], d["family"], d["reason"]) for d in lines] == [
        (csv.id, "csv_total", "wrong_answer"), ("broken", "csv_total", "step_error")]
    again = teach([wrong, broken_code], verified, out, agent_config=AgentConfig())
    assert again.skipped == 2 and again.kept == 0 and again.total_dropped == 0
    assert len((tmp_path / DROPPED).read_text().splitlines()) == 2 and out.read_text() == ""


def test_cli_teach(tmp_path: Path) -> None:
    small = tmp_path / "small"
    make_tasks(small, "train", 2, seed=4, families=["csv_lookup"], verify=False)
    out = tmp_path / "cli" / "kept.jsonl"
    result = CliRunner().invoke(cli, ["tasks", "teach", str(small), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "kept 2, dropped 0" in result.output and "csv_lookup" in result.output
    result = CliRunner().invoke(cli, ["tasks", "teach", str(small), "--out", str(out), "--no-progress"])
    assert "already done 2" in result.output
    assert read_manifest(small).families == ["csv_lookup"]
    assert [t.task.id for t in read_trajectories(out)] == ["train-csv_lookup-0000", "train-csv_lookup-0001"]
