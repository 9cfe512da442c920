"""`t3edge serve` under load, and its own cost per request.

1. The real SmolLM2-135M (llama.cpp) as an agent: 8 concurrent clients of 4 short tasks each
   through the server (openai client, real HTTP on 127.0.0.1), against the baseline: the same 32
   tasks one after another through a Chat in one process (what `t3edge run` does, without
   reloading the model). Total throughput (tasks/minute) and p50/p95 latency of each, and the
   throughput ratio.
2. The server's overhead per request on a replay model (no model time): a plain generation through
   the server against the same generation called directly (median of 200; goal < 5 ms), and the
   same for an agent run (whose sandbox start dominates both).

    python bench/serve.py                         # both parts
    python bench/serve.py --clients 4 --per-client 2
    python bench/serve.py --no-real               # only the overhead (seconds)
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import uvicorn

from t3edge.agent import AgentConfig
from t3edge.backends.base import Backend, GenerationConfig, Message
from t3edge.chat import Chat, new_task
from t3edge.chats import ChatStore
from t3edge.serve.app import Server, ServeSettings

QUESTIONS = ["What is 17 times 3?", "What is 12 plus 30?", "What is 100 minus 58?", "What is 9 times 9?",
             "What is 144 divided by 12?", "What is 7 times 8?", "What is 250 plus 125?", "What is 2 to the power 10?"]


@contextlib.contextmanager
def serving(backend: Backend, work: Path, config: AgentConfig) -> Iterator[str]:
    """The server over `backend` on 127.0.0.1, in this process; yields its /v1 URL."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = ChatStore(work / "chats.db")
    settings = ServeSettings(model_name="bench", agent=config, uploads=work / "uploads")
    server = uvicorn.Server(uvicorn.Config(Server(backend, store, settings).app(), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join()
        store.close()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _row(label: str, latencies: list[float], wall: float) -> float:
    rate = 60 * len(latencies) / wall
    print(f"  {label:34s} {len(latencies):3d} tasks in {wall:6.1f} s: {rate:5.1f} tasks/min, "
          f"latency p50 {_pct(latencies, 0.5):5.1f} s, p95 {_pct(latencies, 0.95):5.1f} s")
    return rate


def real_load(clients: int, per_client: int, max_steps: int, max_tokens: int) -> None:
    from t3edge.chat import load_model

    backend = load_model("smollm2-135m", "gguf")
    config = AgentConfig(max_steps=max_steps, generation={"max_tokens": max_tokens})
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(clients * per_client)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = config.model_copy(update={"workspace": work / "runs"})
        start = time.perf_counter()
        one_by_one = []
        for question in questions:  # the baseline: one process, one task after another
            begun = time.perf_counter()
            Chat(backend, config=config).run_to_end(new_task(question))
            one_by_one.append(time.perf_counter() - begun)
        sequential_wall = time.perf_counter() - start

        latencies: list[float] = []
        lock = threading.Lock()
        with serving(backend, work, config) as url:
            def client(index: int) -> None:
                api = openai.OpenAI(base_url=url, api_key="none", timeout=600)
                for question in questions[index * per_client:(index + 1) * per_client]:
                    begun = time.perf_counter()
                    api.chat.completions.create(model="bench", messages=[{"role": "user", "content": question}])
                    with lock:
                        latencies.append(time.perf_counter() - begun)

            start = time.perf_counter()
            threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            served_wall = time.perf_counter() - start
    backend.close()
    print(f"SmolLM2-135M (llama.cpp) as the agent: {len(questions)} short tasks, {max_steps} steps of up to "
          f"{max_tokens} tokens")
    base = _row("one process, one after another", one_by_one, sequential_wall)
    served = _row(f"t3edge serve, {clients} clients x {per_client}", latencies, served_wall)
    print(f"  throughput ratio served / one process: {served / base:.2f}x (one model serves both: "
          "requests queue for it, so latency grows with the queue)")


def _median_ms(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        begun = time.perf_counter()
        fn()
        times.append(time.perf_counter() - begun)
    return 1000 * statistics.median(times)


def overhead(n: int) -> None:
    from t3edge.backends.replay import ReplayBackend

    reply = "Thought: done.\nCode:\n```py\nfinal_answer('ok')\n```<end_action>"
    backend = ReplayBackend([reply] * (4 * n + 40))
    messages = [{"role": "user", "content": "Say ok."}]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = AgentConfig(workspace=work / "runs", format="free")
        with serving(backend, work, config) as url:
            api = openai.OpenAI(base_url=url, api_key="none")
            api.chat.completions.create(model="bench:raw", messages=messages)  # warm up the connection
            served_raw = _median_ms(lambda: api.chat.completions.create(model="bench:raw", messages=messages), n)
            direct_raw = _median_ms(lambda: backend.generate([Message("user", "Say ok.")], GenerationConfig()), n)
            runs = max(5, n // 20)
            served_agent = _median_ms(lambda: api.chat.completions.create(model="bench", messages=messages), runs)
            store = ChatStore(work / "direct.db")  # the served runs are saved too
            direct_agent = _median_ms(lambda: Chat(backend, config=config, store=store).run_to_end(new_task("Say ok.")),
                                      runs)
            store.close()
    print("server overhead per request (replay model, medians; baseline: the same call in-process)")
    print(f"  plain generation: served {served_raw:7.2f} ms, direct {direct_raw:7.2f} ms, overhead "
          f"{served_raw - direct_raw:6.2f} ms (goal < 5 ms), ratio {served_raw / direct_raw:.1f}x  [{n} requests]")
    print(f"  agent run:        served {served_agent:7.1f} ms, direct {direct_agent:7.1f} ms, overhead "
          f"{served_agent - direct_agent:6.1f} ms (both start a sandbox)  [{runs} requests]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=4)
    parser.add_argument("--max-steps", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--requests", type=int, default=200, help="requests of the overhead measurement")
    parser.add_argument("--no-real", action="store_true", help="skip the real-model load test")
    args = parser.parse_args()
    overhead(args.requests)
    if not args.no_real:
        real_load(args.clients, args.per_client, args.max_steps, args.max_tokens)


if __name__ == "__main__":
    main()
