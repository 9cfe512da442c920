"""Synthesis throughput: tasks per minute against a scripted OpenAI-compatible server with a fixed
latency per request (default 200 ms), at concurrency 1 (the baseline) and 16, and the ratio.

Every task goes through the whole pipeline (queries, file description, image retrieval, both
verifiers, a two-step agent trajectory in the real sandbox, filter); after the query stage, items
flow from stage to stage, so the stages overlap. Printed: wall time and tasks per minute per
concurrency, the share of the ideal (every request slot busy all the time), each stage's share
of the time items spent in stages, and the ratio; then the ratio of the API stages alone (queries
to the query verifier, no sandbox) and its ceiling (the query stage is a round of its own).

    python bench/synth_throughput.py [--tasks 32] [--latency 0.2] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import tempfile
import time
from multiprocessing import Pipe, Process
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from synth.config import SynthConfig
from synth.engine import StageReport
from synth.image_pool import index_pool
from synth.items import STAGES
from synth.pipeline import run_stages
from synth.prompts import FILE_CONTENT_SYSTEM, QUERY_SYSTEM, VERIFY_QUERY_SYSTEM, VERIFY_TRAJ_SYSTEM
from t3edge.scripted_server import ScriptedOpenAIServer
from tinymodels import make_test_image

PER_CALL = 8


def _word(*parts: object) -> str:
    digest = hashlib.sha256(repr(parts).encode()).hexdigest()
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    return "".join(consonants[int(digest[i], 16) % 14] + vowels[int(digest[i + 1], 16) % 5]
                   for i in range(0, 8, 2))


def respond(request: dict[str, Any]) -> str:
    """A model that answers every stage at once and correctly."""
    messages = request["messages"]
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    user = messages[-1]["content"]
    user = user if isinstance(user, str) else " ".join(p.get("text", "") for p in user if p["type"] == "text")
    if system == QUERY_SYSTEM:
        batch = int(re.search(r"batch (\d+)", user).group(1))
        queries = [{"query": f"In my photo of the {_word(batch, i, 1)} near {_word(batch, i, 2)}, "
                             f"what colour is the {_word(batch, i, 3)}?", "tools": ["visualizer"]}
                   for i in range(PER_CALL)]
        return json.dumps({"queries": queries})
    if system == FILE_CONTENT_SYSTEM:
        return json.dumps({"file_numbers": 1, "file_information": {
            "file_1": {"file_type": "jpg", "file_content": "a colourful photo"}}})
    if system in (VERIFY_QUERY_SYSTEM, VERIFY_TRAJ_SYSTEM):
        return json.dumps({"thought": "fine", "correct": "yes"})
    if any(m["role"] == "assistant" for m in messages):
        return 'Thought: Done.\nCode:\n```py\nfinal_answer("blue")\n```<end_action>'
    return 'Thought: Look first.\nCode:\n```py\nprint("looking")\n```<end_action>'


def serve(latency: float, conn: Connection) -> None:
    """The scripted server in its own process (as a real server would be): no shared GIL."""
    with ScriptedOpenAIServer(respond, latency_s=latency) as server:
        conn.send(server.url)
        while conn.recv() == "count":
            conn.send(len(server.requests))


API_STAGES = STAGES[:STAGES.index("verify_query") + 1]  # queries to the query verifier: no sandbox


def measure(url: str, pool: Path, folder: Path, tasks: int, concurrency: int,
            stages: tuple[str, ...] = STAGES) -> tuple[float, list[StageReport]]:
    """Wall seconds and the stage reports of one run of `tasks` tasks through `stages`."""
    cfg = SynthConfig.model_validate({
        "api": {"base_url": url, "model": "bench", "concurrency": concurrency, "timeout_s": 30},
        "queries": {"calls": -(-tasks // PER_CALL), "per_call": PER_CALL},
        "files": {"image_pool": str(pool), "min_image_similarity": 0.0},
        "trajectories": {"max_steps": 3},
    })
    start = time.perf_counter()
    reports = asyncio.run(run_stages(cfg, folder, stages))
    wall = time.perf_counter() - start
    assert reports[-1].stage == stages[-1] and reports[-1].passed >= tasks, reports
    return wall, reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per request")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    tasks = -(-args.tasks // PER_CALL) * PER_CALL

    parent, child = Pipe()
    server = Process(target=serve, args=(args.latency, child), daemon=True)
    server.start()
    url = parent.recv()

    def requests() -> int:
        parent.send("count")
        return parent.recv()

    with tempfile.TemporaryDirectory() as tmp:
        pool = Path(tmp) / "pool"
        pool.mkdir()
        make_test_image(pool / "photo.png", (56, 56))
        (pool / "captions.jsonl").write_text('{"image": "photo.png", "caption": "a colourful photo"}\n')
        asyncio.run(index_pool(pool, captions=pool / "captions.jsonl", caption_with=None))
        results, api_walls = {}, {}
        for concurrency in (1, args.concurrency):
            before = requests()
            measured = measure(url, pool, Path(tmp) / f"run-c{concurrency}", tasks, concurrency)
            results[concurrency] = (measured, requests() - before)
            api_walls[concurrency] = measure(url, pool, Path(tmp) / f"api-c{concurrency}", tasks, concurrency,
                                             API_STAGES)[0]
    parent.send("stop")
    server.join(timeout=10)

    print(f"{tasks} tasks, {args.latency * 1000:.0f} ms per request")
    print(f"{'concurrency':>11} {'requests':>8} {'wall s':>7} {'tasks/min':>9} {'ideal s':>7} {'of ideal':>8}")
    rates = {}
    for concurrency, ((wall, reports), requests) in results.items():
        ideal = requests * args.latency / concurrency  # every slot busy with a request all the time
        rates[concurrency] = tasks / wall * 60
        print(f"{concurrency:>11} {requests:>8} {wall:>7.2f} {rates[concurrency]:>9.1f} {ideal:>7.2f} "
              f"{100 * ideal / wall:>7.0f}%")
    for concurrency, ((wall, reports), _) in results.items():
        busy = sum(r.busy for r in reports)
        print(f"  concurrency {concurrency}, per stage: share of the time items spent in stages "
              "(span: first item in to last out)")
        print("    " + ", ".join(f"{r.stage} {100 * r.busy / busy:.0f}% ({r.seconds:.2f} s)" for r in reports))
    ratio = rates[args.concurrency] / rates[1]
    print(f"ratio {args.concurrency} vs 1: whole pipeline {ratio:.1f}x (target >= 8; at most "
          f"{args.concurrency} with every request slot busy)")
    query_rounds = -(-(tasks // PER_CALL) // args.concurrency)  # the query stage's calls, all at once
    api_ideal = (tasks // PER_CALL + 2 * tasks) / (query_rounds + -(-2 * tasks // args.concurrency))
    print(f"ratio {args.concurrency} vs 1: API stages alone ({' -> '.join(API_STAGES)}) "
          f"{api_walls[1] / api_walls[args.concurrency]:.1f}x ({api_walls[1]:.2f} s vs "
          f"{api_walls[args.concurrency]:.2f} s; at most {api_ideal:.1f}x: the query stage ends before the others start)")
    (wall1, reports1), requests1 = results[1]
    per_task = (wall1 - requests1 * args.latency) / tasks
    print(f"at concurrency 1: {per_task:.3f} s per task beyond its requests' latency (sandbox starts, code "
          f"runs, the pipeline's own work)")


if __name__ == "__main__":
    main()
