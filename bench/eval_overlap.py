"""Evaluation throughput with items run at once: the built-in tasks solved by their reference
steps, served by a scripted OpenAI-compatible server with a fixed latency per request (default
500 ms), at 1 item at a time (the baseline) and at `--jobs` (default 4, eval's default against a
server), through the real runner, agent loop, sandbox and tools. The results must be identical.

Printed per setting: wall time, items per minute, the share of the ideal (every request slot busy
all the time), and the ratio; at 1 item at a time, the time per item beyond its requests (sandbox
start, code and tool runs: what the other items' model calls overlap).

`--local MODEL` also times a model loaded here (e.g. smollm2-135m) at 1 and 2 items at once on
the first `--local-items` tasks: its calls take turns, so only the code and tool time overlaps,
and that code competes with the model for the same cores.

    python bench/eval_overlap.py [--tasks 16] [--latency 0.5] [--jobs 4] [--local smollm2-135m]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from multiprocessing import Pipe, Process
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from t3edge.eval.config import EvalConfig
from t3edge.eval.jobs import collect, prepare_run, run_job
from t3edge.scripted_server import ScriptedOpenAIServer
from t3edge.tasks import load_tasks, make_tasks
from t3edge.tasks.generate import reference_outputs

FAMILIES = ["csv_total", "csv_lookup", "json_field", "ocr_code", "face_count", "image_size"]


def serve(folder: str, latency: float, conn: Connection) -> None:
    """The scripted server in its own process (as a real server would be): no shared GIL.
    Each task (known by its files' folder in the task message) is answered with its reference
    steps, one per request."""
    records, _ = load_tasks(folder)
    steps = {f"/{r.id}/": reference_outputs(r) for r in records}  # tasks may share a query, not files

    def respond(request: dict[str, Any]) -> str:
        messages = request["messages"]
        user = next(m["content"] for m in messages if m["role"] == "user")
        text = user if isinstance(user, str) else " ".join(p.get("text", "") for p in user)
        reference = next(s for folder, s in steps.items() if folder in text)
        done = sum(m["role"] == "assistant" for m in messages)
        return reference[min(done, len(reference) - 1)]

    with ScriptedOpenAIServer(respond, latency_s=latency) as server:
        conn.send(server.url)
        while conn.recv() == "count":
            conn.send(len(server.requests))


def measure(model: str, data: Path, out: Path, jobs: int, limit: int | None = None) -> tuple[float, list[Any]]:
    """Wall seconds and the records of one run."""
    cfg = EvalConfig(jobs=jobs, plot=False, fsync=False)
    run = prepare_run("tasks", model, cfg, data=data, out=out, limit=limit)
    start = time.perf_counter()
    outcome, _ = run_job(run, progress=False, fsync=False)
    wall = time.perf_counter() - start
    assert outcome.complete and not outcome.failed, outcome.failed
    return wall, collect([out])[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.5, help="seconds per request")
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--local", default=None, help="also time this model loaded here (e.g. smollm2-135m)")
    parser.add_argument("--local-items", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "tasks"
        make_tasks(data, "test", args.tasks, seed=0, families=FAMILIES)
        parent, child = Pipe()
        server = Process(target=serve, args=(str(data), args.latency, child), daemon=True)
        server.start()
        url = parent.recv()
        results = {}
        for jobs in (1, args.jobs):
            parent.send("count")
            before = parent.recv()
            wall, records = measure(url, data, Path(tmp) / f"served-{jobs}", jobs)
            parent.send("count")
            results[jobs] = (wall, records, parent.recv() - before)
        parent.send("stop")
        server.join(timeout=10)

        print(f"{args.tasks} built-in tasks by their reference steps, {args.latency * 1000:.0f} ms per request")
        print(f"{'at once':>7} {'requests':>8} {'wall s':>7} {'items/min':>9} {'ideal s':>7} {'of ideal':>8} "
              f"{'AnsAcc':>6}")
        for jobs, (wall, records, requests) in results.items():
            ideal = requests * args.latency / jobs
            acc = 100 * sum(bool(r.verdict.correct) for r in records) / len(records)
            print(f"{jobs:>7} {requests:>8} {wall:>7.2f} {len(records) / wall * 60:>9.1f} {ideal:>7.2f} "
                  f"{100 * ideal / wall:>7.0f}% {acc:>6.1f}")
        (wall1, records1, requests1), (wall_n, records_n, _) = results[1], results[args.jobs]
        same = [r.outcome() for r in records1] == [r.outcome() for r in records_n]
        print(f"ratio {args.jobs} vs 1: {wall1 / wall_n:.2f}x (at most {args.jobs}); results identical: {same}")
        print(f"at 1 at a time: {(wall1 - requests1 * args.latency) / len(records1):.3f} s per item beyond its "
              "requests' latency (sandbox start, code and tool runs)")

        if args.local:
            local = {}
            for jobs in (1, 2):
                wall, records = measure(args.local, data, Path(tmp) / f"local-{jobs}", jobs, args.local_items)
                steps = sum(len(r.trajectory.steps) for r in records)
                local[jobs] = (wall, [r.outcome() for r in records])
                print(f"{args.local} loaded here, {jobs} at once: {wall:.1f} s for {len(records)} items "
                      f"({steps} steps)")
            print(f"ratio 2 vs 1 on {args.local}: {local[1][0] / local[2][0]:.2f}x (its calls take turns); "
                  f"results identical: {local[1][1] == local[2][1]}")


if __name__ == "__main__":
    main()
