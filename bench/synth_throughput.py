"""Synthesis throughput: tasks per minute against a scripted OpenAI-compatible server with a fixed
latency per request (default 200 ms), at concurrency 1 (the baseline) and 16, and the ratio.

Every task goes through the whole pipeline (queries, file description, image retrieval, both
verifiers, a two-step agent trajectory in the real sandbox, filter). Two figures are printed:
the API-bound stages alone, and the whole pipeline, whose trajectory stage also spends about a
CPU-second per task starting the agent's sandbox process, which more cores than requests hide.

    python bench/synth_throughput.py [--tasks 32] [--latency 0.2] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import tempfile
from multiprocessing import Pipe, Process
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from synth.config import SynthConfig
from synth.image_pool import index_pool
from synth.items import STAGES
from synth.pipeline import run_stages
from synth.prompts import FILE_CONTENT_SYSTEM, QUERY_SYSTEM, VERIFY_QUERY_SYSTEM, VERIFY_TRAJ_SYSTEM
from t3edge.scripted_server import ScriptedOpenAIServer
from tinymodels import make_test_image

PER_CALL = 8
API_STAGES = ("queries", "file_content", "files", "verify_query", "verify_traj", "filter")


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


def measure(url: str, pool: Path, folder: Path, tasks: int, concurrency: int) -> dict[str, float]:
    """Seconds per stage for one run of `tasks` tasks."""
    cfg = SynthConfig.model_validate({
        "api": {"base_url": url, "model": "bench", "concurrency": concurrency, "timeout_s": 30},
        "queries": {"calls": -(-tasks // PER_CALL), "per_call": PER_CALL},
        "files": {"image_pool": str(pool), "min_image_similarity": 0.0},
        "trajectories": {"max_steps": 3},
    })
    reports = asyncio.run(run_stages(cfg, folder, STAGES))
    assert reports[-1].stage == "filter" and reports[-1].passed >= tasks, reports
    return {r.stage: r.seconds for r in reports}


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
        results = {}
        for concurrency in (1, args.concurrency):
            before = requests()
            seconds = measure(url, pool, Path(tmp) / f"run-c{concurrency}", tasks, concurrency)
            results[concurrency] = (seconds, requests() - before)
    parent.send("stop")
    server.join(timeout=10)

    print(f"{tasks} tasks, {args.latency * 1000:.0f} ms per request")
    print(f"{'concurrency':>11} {'requests':>8} {'API stages s':>12} {'tasks/min':>9} "
          f"{'whole s':>8} {'tasks/min':>9}")
    rates = {}
    for concurrency, (seconds, requests) in results.items():
        api = sum(seconds[s] for s in API_STAGES)
        whole = sum(seconds.values())
        rates[concurrency] = (tasks / api * 60, tasks / whole * 60)
        print(f"{concurrency:>11} {requests:>8} {api:>12.2f} {rates[concurrency][0]:>9.1f} "
              f"{whole:>8.2f} {rates[concurrency][1]:>9.1f}")
    for concurrency, (seconds, _) in results.items():
        print(f"  seconds per stage at concurrency {concurrency}: "
              + ", ".join(f"{s} {t:.2f}" for s, t in seconds.items()))
    api_ratio = rates[args.concurrency][0] / rates[1][0]
    whole_ratio = rates[args.concurrency][1] / rates[1][1]
    print(f"ratio {args.concurrency} vs 1: API stages {api_ratio:.1f}x (target >= 12), "
          f"whole pipeline {whole_ratio:.1f}x")
    per_task = results[1][0]["trajectories"] / tasks - 2 * args.latency
    print(f"trajectory stage at concurrency 1: {per_task:.2f} s per task beyond its 2 requests "
          f"(sandbox start and code runs, CPU-bound)")


if __name__ == "__main__":
    main()
