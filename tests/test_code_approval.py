"""Code approval (`agent.approve = "ask"`): in the loop, on the command line and in the app, a
block can be run, edited or rejected; a rejection is an error observation and the run goes on."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from tui_helpers import make_app, own_data_dir, pilot_test, send, wait_for  # noqa: F401 (own_data_dir: autouse)

from t3edge.agent import Agent, AgentConfig
from t3edge.agent.approval import Decision, Proposal
from t3edge.backends.replay import ReplayBackend
from t3edge.protocol import format_step
from t3edge.trajectory import Task, read_trajectories

RISKY = format_step("I delete the file.", "import os\nos.remove('notes.txt')\nprint('gone')")
SAFE = format_step("I read it instead.", "print(open('notes.txt').read())")
DONE = format_step("Done.", "final_answer('kept')")


def _agent(tmp_path: Path, outputs: list[str], decisions: list[Decision], approve: str = "ask") -> tuple[Agent, list[Proposal]]:
    asked: list[Proposal] = []

    def approver(proposal: Proposal) -> Decision:
        asked.append(proposal)
        return decisions.pop(0)

    (tmp_path / "w").mkdir(exist_ok=True)
    (tmp_path / "w" / "notes.txt").write_text("keep me")
    config = AgentConfig(approve=approve, format="free")  # type: ignore[arg-type]
    return Agent(ReplayBackend(outputs), config=config, workspace=tmp_path / "w", approver=approver), asked


def test_a_rejected_block_is_an_error_observation_and_the_run_goes_on(tmp_path: Path) -> None:
    agent, asked = _agent(tmp_path, [RISKY, SAFE, DONE],
                          [Decision("reject", reason="never delete my files"), Decision("run"), Decision("run")])
    traj = agent.run_to_end(Task(id="t", query="tidy up"))
    assert (tmp_path / "w" / "notes.txt").read_text() == "keep me"  # the rejected code never ran
    assert [s.kind for s in traj.steps] == ["rejected", "action", "action"]
    assert [s.approval for s in traj.steps] == ["rejected", "approved", "approved"]
    assert "never delete my files" in (traj.steps[0].feedback or "") and "Error" in (traj.steps[0].feedback or "")
    assert traj.steps[1].observation == "keep me\n" and traj.final_answer == "kept"
    assert [p.index for p in asked] == [0, 1, 2] and asked[0].thought == "I delete the file."


def test_an_edited_block_runs_as_edited_and_the_model_sees_what_ran(tmp_path: Path) -> None:
    agent, _ = _agent(tmp_path, [RISKY, DONE], [Decision("edit", code="print(len(open('notes.txt').read()))"),
                                                Decision("run")])
    traj = agent.run_to_end(Task(id="t", query="tidy up"))
    first = traj.steps[0]
    assert (tmp_path / "w" / "notes.txt").exists() and first.observation == "7\n"
    assert first.approval == "edited" and "os.remove" in (first.proposed_code or "")
    assert first.code == "print(len(open('notes.txt').read()))" and "os.remove" not in first.raw_output


def test_never_and_no_approver_never_ask(tmp_path: Path) -> None:
    agent, asked = _agent(tmp_path, [SAFE, DONE], [], approve="never")
    assert agent.run_to_end(Task(id="t", query="q")).final_answer == "kept" and asked == []
    silent = Agent(ReplayBackend([SAFE, DONE]), config=AgentConfig(approve="ask", format="free"),  # type: ignore[arg-type]
                   workspace=tmp_path / "w")  # evaluation and synthesis pass no approver
    assert silent.run_to_end(Task(id="u", query="q")).steps[0].approval is None


def _script(tmp_path: Path, outputs: list[str]) -> Path:
    path = tmp_path / "script.jsonl"
    path.write_text("".join(json.dumps(o) + "\n" for o in outputs))
    return path


def test_the_command_line_asks_and_a_rejection_reaches_the_model(tmp_path: Path) -> None:
    from t3edge.cli import cli

    work = tmp_path / "w"
    work.mkdir()
    (work / "notes.txt").write_text("keep me")
    out = tmp_path / "runs.jsonl"
    result = CliRunner().invoke(cli, ["run", "tidy up", "--model", f"replay:{_script(tmp_path, [RISKY, SAFE, DONE])}",
                                      "--approve", "ask", "--format", "free", "--workspace", str(work),
                                      "--out", str(out)],
                                input="n\nnever delete my files\ny\n\n", catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.count("Run this code?") == 3
    traj = next(read_trajectories(out))
    assert [s.approval for s in traj.steps] == ["rejected", "approved", "approved"]
    assert (work / "notes.txt").exists() and traj.final_answer == "kept"


def test_the_command_line_edits_in_the_editor(tmp_path: Path) -> None:
    from t3edge.cli import cli

    work = tmp_path / "w"
    work.mkdir()
    (work / "notes.txt").write_text("keep me")
    out = tmp_path / "runs.jsonl"
    editor = tmp_path / "editor.sh"  # an "editor" that rewrites the code it is given
    editor.write_text("#!/bin/sh\nprintf \"print('edited')\\n\" > \"$1\"\n")
    editor.chmod(0o755)
    result = CliRunner(env={"EDITOR": str(editor), "VISUAL": str(editor)}).invoke(
        cli, ["run", "tidy up", "--model", f"replay:{_script(tmp_path, [RISKY, DONE])}", "--approve", "ask",
              "--format", "free", "--workspace", str(work), "--out", str(out)],
        input="e\ny\n", catch_exceptions=False)
    assert result.exit_code == 0, result.output
    first = next(read_trajectories(out)).steps[0]
    assert first.approval == "edited" and first.code == "print('edited')" and first.observation == "edited\n"
    assert (work / "notes.txt").exists()


def test_end_of_input_rejects_and_stops_the_run(tmp_path: Path) -> None:
    from t3edge.cli import cli

    out = tmp_path / "runs.jsonl"
    result = CliRunner().invoke(cli, ["run", "tidy up", "--model", f"replay:{_script(tmp_path, [SAFE, DONE])}",
                                      "--approve", "ask", "--workspace", str(tmp_path / "w"), "--out", str(out)],
                                input="", catch_exceptions=False)
    assert result.exit_code == 130
    traj = next(read_trajectories(out))
    assert traj.ended == "cancelled" and traj.steps[0].kind == "rejected"


@pilot_test
async def test_the_app_asks_and_a_rejected_block_becomes_an_error_the_model_sees(tmp_path: Path) -> None:
    from textual.widgets import Input, TextArea

    from tui.screens.dialogs import ApproveCode

    app = make_app(tmp_path, [RISKY, format_step("Edited next.", "print('x')"), DONE],
                   agent_overrides={"approve": "ask", "format": "free"})
    async with app.run_test(size=(110, 40)) as pilot:
        await send(pilot, "tidy up")
        await wait_for(pilot, lambda: isinstance(app.screen, ApproveCode))
        assert "os.remove" in app.screen.query_one(TextArea).text
        app.screen.query_one("#reason", Input).value = "never delete my files"
        await pilot.click("#reject")
        await wait_for(pilot, lambda: isinstance(app.screen, ApproveCode) and app.screen.proposal.index == 1)
        app.screen.query_one(TextArea).text = "print('changed in the app')"
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, ApproveCode) and app.screen.proposal.index == 2)
        await pilot.click("#run")
        await wait_for(pilot, lambda: not app.chat.running)
        saved = app.store.runs(app.session_id)[0]
        assert [s.approval for s in saved.steps] == ["rejected", "edited", "approved"]
        assert "never delete my files" in (saved.steps[0].feedback or "")
        assert saved.steps[1].observation == "changed in the app\n" and saved.final_answer == "kept"
