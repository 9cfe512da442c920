"""The resumable runner: one record per finished item, resume after SIGKILL, shards, failures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from eval_datasets import make_gta
from t3edge.errors import T3Error
from t3edge.eval.gta import load_gta
from t3edge.eval.jobs import collect, merge
from t3edge.eval.records import RunInfo, Shard, read_records, result_files, write_run_info
from t3edge.eval.runner import ItemCancelled, Solved, gta_suite, run_suite
from t3edge.jsonl import iter_jsonl
from t3edge.trajectory import Step, Trajectory

ANSWERS = {"0": "4", "1": "red", "2": "a car", "3": None, "4": "25%", "5": "5 dollars"}


def stand_in(item, cancel: threading.Event | None = None) -> Solved:
    """A deterministic stand-in for the agent: one code step, then the item's known answer."""
    step = Step(index=0, raw_output="x", code="print(1)", error="boom" if item.id == "4" else None)
    return Solved(Trajectory(task=item.task(), steps=[step], final_answer=ANSWERS[item.id], ended="final_answer"), [])


def outcomes(folder: Path) -> list[dict]:
    return [r.outcome() for r in collect([folder])[1]]


def _suite(root: Path):
    return gta_suite(load_gta(make_gta(root)), None, "none configured")


def _info(root: Path, total: int = 6) -> RunInfo:
    return RunInfo(benchmark="gta", data=str(root), model="stand-in", total=total)


def test_records_one_line_per_item_and_resume_skips_finished(tmp_path: Path) -> None:
    suite = _suite(tmp_path / "gta")
    out = tmp_path / "run"
    calls: list[str] = []

    def solve(item, cancel):
        calls.append(item.id)
        return stand_in(item)

    first = run_suite(suite, solve, out, limit=3, progress=False)
    assert (first.finished, first.total, first.ran) == (3, 3, 3)
    again = run_suite(suite, solve, out, progress=False)
    assert calls == ["0", "1", "2", "0", "1", "2", "3", "4", "5"][:3] + ["3", "4", "5"]
    assert again.ran == 3 and again.complete
    records = read_records(result_files(out))
    assert [r.id for r in records] == ["0", "1", "2", "3", "4", "5"]
    assert records[0].verdict.official == 1.0 and records[4].verdict.official == 0.0
    assert records[4].verdict.lenient is True  # "25%" passes only the lenient protocol


def test_a_torn_last_line_reruns_that_item_only(tmp_path: Path) -> None:
    suite = _suite(tmp_path / "gta")
    out = tmp_path / "run"
    run_suite(suite, stand_in, out, limit=2, progress=False)
    path = out / "results.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + lines[1][: len(lines[1]) // 2])  # killed mid-write of item 1
    ran: list[str] = []
    run_suite(suite, lambda it, cancel: (ran.append(it.id), stand_in(it))[1], out, progress=False)
    assert ran == ["1", "2", "3", "4", "5"]
    assert [r.id for r in read_records([path])] == ["0", "1", "2", "3", "4", "5"]


def test_failures_are_not_recorded_and_three_in_a_row_stop_the_run(tmp_path: Path) -> None:
    suite = _suite(tmp_path / "gta")
    out = tmp_path / "run"

    def flaky(item, cancel):
        if item.id == "1":
            raise RuntimeError("model crashed")
        return stand_in(item)

    outcome = run_suite(suite, flaky, out, progress=False)
    assert outcome.failed == [("1", "RuntimeError: model crashed")] and outcome.finished == 5
    assert run_suite(suite, stand_in, out, progress=False).ran == 1  # the rerun retries it

    def broken(item, cancel):
        raise RuntimeError("server down")

    with pytest.raises(T3Error, match="3 items in a row failed"):
        run_suite(suite, broken, tmp_path / "run2", progress=False)
    assert read_records(result_files(tmp_path / "run2")) == []


def test_shards_merge_into_exactly_the_single_run(tmp_path: Path) -> None:
    suite = _suite(tmp_path / "gta")
    single = tmp_path / "single"
    write_run_info(single, _info(tmp_path / "gta"))
    run_suite(suite, stand_in, single, progress=False)
    for i in range(3):
        folder = tmp_path / f"shard{i}"
        write_run_info(folder, _info(tmp_path / "gta"))
        run_suite(suite, stand_in, folder, shard=Shard.parse(f"{i}/3"), progress=False)
    assert sorted(r.id for r in collect([tmp_path / "shard1"])[1]) == ["1", "4"]
    with pytest.raises(T3Error, match="4 of 6"):
        merge([tmp_path / "shard0", tmp_path / "shard1"], tmp_path / "merged")
    merge([tmp_path / f"shard{i}" for i in range(3)], tmp_path / "merged")
    assert outcomes(tmp_path / "merged") == outcomes(single)
    assert (tmp_path / "merged" / "report.md").is_file() and (tmp_path / "merged" / "plot.png").is_file()


def test_shard_spec_and_run_identity(tmp_path: Path) -> None:
    assert Shard.parse("2/4").holds(6) and not Shard.parse("2/4").holds(5)
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(T3Error):
            Shard.parse(bad)
    write_run_info(tmp_path, _info(tmp_path).model_copy(update={"data_sha256": "abc"}))
    with pytest.raises(T3Error, match="another run"):
        write_run_info(tmp_path, RunInfo(benchmark="gta", data=str(tmp_path), data_sha256="abc", model="other"))
    with pytest.raises(T3Error, match="data_sha256"):
        write_run_info(tmp_path, RunInfo(benchmark="gta", data=str(tmp_path), data_sha256="def", model="stand-in"))
    # the same data in another place (another machine's shard) is the same run
    write_run_info(tmp_path, RunInfo(benchmark="gta", data="/elsewhere", data_sha256="abc", model="stand-in"))


_CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_eval_runner import stand_in, _suite
from t3edge.eval.runner import run_suite

def slow(item, cancel):
    time.sleep(0.1 + 0.1 * int(item.id))  # with several jobs, items still finish one by one
    return stand_in(item)

run_suite(_suite(Path({data!r})), slow, Path({out!r}), progress=False, fsync=True, jobs={jobs})
"""


def _finished(folder: Path) -> int:
    path = folder / "results.jsonl"
    return path.read_bytes().count(b"\n") if path.is_file() else 0


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 3])
def test_sigkill_at_any_point_then_resume_equals_an_uninterrupted_run(tmp_path: Path, jobs: int) -> None:
    data = tmp_path / "gta"
    straight, out = tmp_path / "straight", tmp_path / "killed"
    for folder in (straight, out):
        write_run_info(folder, _info(data))
    run_suite(_suite(data), stand_in, straight, progress=False)
    script = _CHILD.format(tests=str(Path(__file__).parent), data=str(data), out=str(out), jobs=jobs)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    counts = []
    for target in (1, 3, 4):  # kill as soon as `target` items are finished: mid-way through the next
        child = subprocess.Popen([sys.executable, "-c", script], env=env)
        while _finished(out) < target and child.poll() is None:
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        counts.append(_finished(out))
    subprocess.run([sys.executable, "-c", script], env=env, check=True)
    ids = [obj["id"] for obj in iter_jsonl(out / "results.jsonl", on_bad_line="skip")]
    assert sorted(ids) == ["0", "1", "2", "3", "4", "5"]  # no item twice, none lost
    assert counts[0] >= 1 and counts == sorted(counts) and counts[-1] < 6
    assert outcomes(out) == outcomes(straight)


def test_compare_lists_the_items_whose_result_changed(tmp_path: Path) -> None:
    from t3edge.eval.jobs import compare, report

    suite = _suite(tmp_path / "gta")
    base, other = tmp_path / "a", tmp_path / "b"
    for folder, answers in ((base, ANSWERS), (other, {**ANSWERS, "0": "five", "5": "5 USD"})):
        write_run_info(folder, _info(tmp_path / "gta"))
        run_suite(suite, lambda it, cancel, a=answers: Solved(stand_in(it).trajectory.model_copy(
            update={"final_answer": a[it.id]}), []), folder, progress=False)
    result = compare(base, other)
    assert [(c["id"], c["a"], c["b"]) for c in result["changed"]] == [("0", 1.0, 0.0)]  # "5 USD" still right
    assert result["a"]["metrics"]["official"]["answer_acc_objective"] == pytest.approx(75.0)
    assert result["b"]["metrics"]["official"]["answer_acc_objective"] == pytest.approx(50.0)
    summary = report(base)
    assert summary["complete"] and "code_exec" in summary["metrics"]["t3agent"]


def test_report_of_an_unfinished_run_says_so(tmp_path: Path) -> None:
    from t3edge.eval.jobs import report

    folder = tmp_path / "run"
    write_run_info(folder, _info(tmp_path / "gta"))
    run_suite(_suite(tmp_path / "gta"), stand_in, folder, limit=2, progress=False)
    summary = report(folder)
    assert (summary["finished"], summary["total"], summary["complete"]) == (2, 6, False)
    assert "incomplete" in (folder / "report.md").read_text()


def test_items_run_jobs_at_a_time_into_the_same_records(tmp_path: Path) -> None:
    suite = _suite(tmp_path / "gta")
    one, three = tmp_path / "one", tmp_path / "three"
    for folder in (one, three):
        write_run_info(folder, _info(tmp_path / "gta"))
    run_suite(suite, stand_in, one, progress=False)
    lock, running, most = threading.Lock(), [0], [0]

    def slow(item, cancel):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.15 if item.id in ("0", "3") else 0.05)  # finish out of dataset order
        with lock:
            running[0] -= 1
        return stand_in(item)

    outcome = run_suite(suite, slow, three, progress=False, jobs=3)
    assert outcome.ran == 6 and outcome.complete and not outcome.stopped and most[0] == 3
    written = [r.id for r in read_records(result_files(three))]
    assert sorted(written) == ["0", "1", "2", "3", "4", "5"] and written != sorted(written)
    assert outcomes(three) == outcomes(one)  # readers put records back in dataset order


def test_failures_in_a_row_stop_a_run_of_several_jobs_keeping_what_finished(tmp_path: Path) -> None:
    suite = _suite(tmp_path / "gta")

    def broken_after_first(item, cancel):
        if item.id == "0":
            return stand_in(item)
        time.sleep(0.05)
        raise RuntimeError("server down")

    with pytest.raises(T3Error, match="3 items in a row failed"):
        run_suite(suite, broken_after_first, tmp_path / "run", progress=False, jobs=2)
    assert [r.id for r in read_records(result_files(tmp_path / "run"))] == ["0"]


def _wait_for_cancel(item, cancel):
    """Item 0 finishes at once; the others run until cancelled (as the agent does, mid-step)."""
    if item.id != "0":
        if not cancel.wait(30):
            raise AssertionError("never cancelled")
        raise ItemCancelled(f"{item.id} stopped")
    return stand_in(item)


def test_cancel_stops_the_running_items_and_keeps_the_finished_ones(tmp_path: Path) -> None:
    suite = _suite(tmp_path / "gta")
    out = tmp_path / "run"
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    outcome = run_suite(suite, _wait_for_cancel, out, progress=False, jobs=3, cancel=cancel)
    assert outcome.stopped and outcome.failed == [] and (outcome.finished, outcome.ran) == (1, 1)
    assert [r.id for r in read_records(result_files(out))] == ["0"]
    assert run_suite(suite, stand_in, out, progress=False, jobs=3).ran == 5  # the rest on resume


def _deaf_to_cancel(item, cancel):
    """Item 0 finishes at once; the others take a minute, whatever happens (a call that cannot
    be interrupted)."""
    if item.id != "0":
        time.sleep(60)
    return stand_in(item)


_CTRL_C_CHILD = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_eval_runner import {solver}, _suite
from t3edge.eval.runner import run_suite

print("started", flush=True)
run_suite(_suite(Path({data!r})), {solver}, Path({out!r}), progress=False, jobs=3)
"""


def _interrupted_run(tmp_path: Path, solver: str) -> tuple[subprocess.Popen, Path]:
    """A run in a child process, once its first item is recorded (the others are running)."""
    out = tmp_path / "run"
    script = _CTRL_C_CHILD.format(tests=str(Path(__file__).parent), data=str(tmp_path / "gta"), out=str(out),
                                  solver=solver)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})
    assert child.stdout.readline() == "started\n"
    deadline = time.monotonic() + 30
    while _finished(out) < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    return child, out


def test_ctrl_c_cancels_the_running_items_and_keeps_the_finished_ones(tmp_path: Path) -> None:
    child, out = _interrupted_run(tmp_path, "_wait_for_cancel")
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=30)
    assert child.returncode != 0 and "KeyboardInterrupt" in err and "never cancelled" not in err
    assert "stopping the 3 running item(s)" in err and "Ctrl-C again to quit without waiting" in err
    assert [r.id for r in read_records(result_files(out))] == ["0"]


def test_a_second_ctrl_c_quits_without_waiting_for_the_running_items(tmp_path: Path) -> None:
    child, out = _interrupted_run(tmp_path, "_deaf_to_cancel")
    child.send_signal(signal.SIGINT)
    time.sleep(1.0)
    assert child.poll() is None  # waiting for items that do not listen
    child.send_signal(signal.SIGINT)
    start = time.monotonic()
    _, err = child.communicate(timeout=30)
    assert time.monotonic() - start < 10 and child.returncode != 0 and "KeyboardInterrupt" in err
    assert [r.id for r in read_records(result_files(out))] == ["0"]
