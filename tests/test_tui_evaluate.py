"""The evaluation screen runs the real evaluation runner on a small invented GTA-format dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_datasets import GTA_ITEMS, make_gta
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Markdown, ProgressBar
from tui_helpers import make_app, own_data_dir, pilot_test, wait_for  # noqa: F401 (own_data_dir: autouse)

from tui.screens.evaluate import EvaluateScreen


async def start_gta(pilot: Pilot, data: Path, script: Path, limit: str = "") -> EvaluateScreen:
    """Open the evaluation screen and start a GTA run of the replayed `script`."""
    await pilot.press("f4")
    screen = pilot.app.screen
    assert isinstance(screen, EvaluateScreen)
    screen.query_one("#data", Input).value = str(data)
    screen.query_one("#model", Input).value = f"replay:{script}"
    screen.query_one("#limit", Input).value = limit
    screen.start()
    return screen


@pytest.mark.slow
@pilot_test
async def test_evaluation_screen_runs_reports_and_resumes(tmp_path: Path) -> None:
    data = make_gta(tmp_path / "gta", {k: GTA_ITEMS[k] for k in ("0", "1", "4")})
    script = tmp_path / "answers.jsonl"
    script.write_text(json.dumps("Thought: count.\nCode:\n```py\nfinal_answer('4 apples')\n```<end_action>") + "\n")
    app = make_app(tmp_path, [])
    async with app.run_test(size=(110, 40)) as pilot:
        screen = await start_gta(pilot, data, script, limit="2")
        await wait_for(pilot, lambda: not screen.running, limit_s=120)
        await pilot.pause()
        table = screen.query_one(DataTable)
        assert table.row_count == 2
        assert [str(table.get_cell_at((r, 3))) for r in range(2)] == ["✓", "✗"]  # "4 apples" fits item 0 only
        assert screen.query_one(ProgressBar).progress == 2
        assert screen.folder is not None and (screen.folder / "report.md").is_file()
        assert screen.query(Markdown)

        # the same settings again: everything is already done, nothing runs twice
        screen.start()
        await wait_for(pilot, lambda: not screen.running, limit_s=60)
        assert len((screen.folder / "results.jsonl").read_text().splitlines()) == 2
        await pilot.press("escape")
        assert app.screen is app.chat


@pytest.mark.slow
@pilot_test
async def test_evaluation_screen_runs_the_built_in_tasks(tmp_path: Path) -> None:
    from t3edge.tasks import load_tasks, make_tasks
    from t3edge.tasks.generate import reference_outputs

    make_tasks(tmp_path / "tasks", "test", 2, 0, families=["csv_total"])
    records, _ = load_tasks(tmp_path / "tasks")
    script = tmp_path / "answers.jsonl"  # the first task's reference solution, then a wrong answer
    script.write_text("".join(json.dumps(step) + "\n" for step in reference_outputs(records[0]))
                      + json.dumps("Thought: guess.\nCode:\n```py\nfinal_answer(-1)\n```<end_action>") + "\n")
    app = make_app(tmp_path, [])
    async with app.run_test(size=(110, 40)) as pilot:
        await pilot.press("f4")
        screen = app.screen
        assert isinstance(screen, EvaluateScreen)
        screen.query_one("#benchmark").value = "tasks"
        screen.query_one("#data", Input).value = str(tmp_path / "tasks")
        screen.query_one("#model", Input).value = f"replay:{script}"
        screen.start()
        await wait_for(pilot, lambda: not screen.running, limit_s=120)
        await pilot.pause()
        table = screen.query_one(DataTable)
        status = str(screen.query_one("#eval-status").render())
        assert [str(table.get_cell_at((r, 3))) for r in range(table.row_count)] == ["✓", "✗"], status
        assert screen.folder is not None and (screen.folder / "report.md").is_file()


@pytest.mark.slow
@pilot_test
async def test_stop_cancels_the_running_item_mid_step(tmp_path: Path) -> None:
    data = make_gta(tmp_path / "gta", {k: GTA_ITEMS[k] for k in ("0", "1")})
    script = tmp_path / "slow.jsonl"  # every item's first step runs for 25 s
    script.write_text(json.dumps("Thought: wait.\nCode:\n```py\nimport time\ntime.sleep(25)\n```<end_action>") + "\n")
    app = make_app(tmp_path, [])
    async with app.run_test(size=(110, 40)) as pilot:
        screen = await start_gta(pilot, data, script)
        await wait_for(pilot, lambda: "Running item" in str(screen.query_one("#eval-status").render()), limit_s=30)
        await pilot.pause(1.0)  # inside the sleeping step
        await pilot.click("#stop")
        await wait_for(pilot, lambda: not screen.running, limit_s=15)  # well before the step would end
        assert str(screen.query_one("#eval-status").render()).startswith("Stopped")
        assert screen.folder is not None and not (screen.folder / "results.jsonl").read_text()
        assert screen.query_one(DataTable).row_count == 0
