"""The agent loop's own cost: per-step overhead on a scripted backend, the cost of bounding a tool
call (target: under 5 ms), and the share of a 3-step run on the tiny MLX model spent outside the
backend (target: under 5%).

Baseline for the executor: the same code blocks run by smolagents' interpreter in this process,
without the sandbox process. Baseline for a sandbox start forked from the zygote: a new
interpreter per sandbox (how every sandbox started before). Baseline for the tool bound: the same
small tool called directly.
Run: python bench/agent_overhead.py [--steps 20] [--starts 20] [--no-mlx]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from smolagents.local_python_executor import LocalPythonExecutor

from t3edge.agent import Agent, AgentConfig
from t3edge.agent.executor import Sandbox
from t3edge.backends.base import (
    Backend,
    Completion,
    GenerationConfig,
    Message,
    StreamItem,
)
from t3edge.backends.replay import ReplayBackend
from t3edge.protocol import format_step, observation_message, parse_model_output
from t3edge.tools import ToolContext, ToolSet, default_tools, tool
from t3edge.tools.bounds import call_bounded
from t3edge.trajectory import Attachment, Task

CODE = "x = {i} * 3\nprint('value', x)"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


class TimedBackend(Backend):
    """Wraps a backend, adding up the time spent inside its streams. With `script`, each call's
    text is replaced by the next scripted output (the model still generates, for real timing)."""

    def __init__(self, inner: Backend, script: Sequence[str] = ()) -> None:
        super().__init__(inner.model_id, context_length=inner.context_length)
        self.name = inner.name
        self.inner, self.script, self.seconds, self.calls = inner, list(script), 0.0, 0
        self.per_call: list[float] = []

    def stream(self, messages: Sequence[Message], config: GenerationConfig) -> Iterator[StreamItem]:
        start = time.perf_counter()
        items = list(self.inner.stream(messages, config))
        self.per_call.append(time.perf_counter() - start)
        self.seconds += self.per_call[-1]
        completion = items[-1]
        assert isinstance(completion, Completion)
        if self.calls < len(self.script):
            completion = Completion(text=self.script[self.calls], usage=completion.usage,
                                    finish_reason="stop_string", stop_string="<end_action>")
            items = [completion]
        self.calls += 1
        yield from items


def scripted(steps: int) -> None:
    outputs = [format_step(f"Step {i}.", CODE.format(i=i)) for i in range(steps - 1)]
    outputs.append(format_step("Done.", "final_answer(x)"))

    parse = min(_time(lambda: [parse_model_output(o) for o in outputs], 20)) / len(outputs)
    observe = min(_time(lambda: [observation_message(i, "value 3\n") for i in range(steps)], 20)) / steps

    with tempfile.TemporaryDirectory() as tmp:
        ctx = ToolContext(workspace=Path(tmp))
        with Sandbox(default_tools(ctx), Path(tmp)) as sandbox:
            sandbox.start()
            sandboxed = [_once(lambda i=i: sandbox.run(CODE.format(i=i))) for i in range(steps)]
        local = LocalPythonExecutor([], timeout_seconds=None)
        local.send_tools({})
        in_process = [_once(lambda i=i: local(CODE.format(i=i))) for i in range(steps)]

        backend = TimedBackend(ReplayBackend(outputs))
        agent = Agent(backend, config=AgentConfig(max_steps=steps), workspace=Path(tmp) / "run")
        start = time.perf_counter()
        traj = agent.run_to_end(Task(id="bench", query="bench"))
        wall = time.perf_counter() - start
    assert traj.ended == "final_answer", traj.ended
    per_step = (wall - backend.seconds) / len(traj.steps)
    steady = statistics.mean(s.seconds - b for s, b in zip(traj.steps[1:], backend.per_call[1:]))
    median_sandboxed, median_local = statistics.median(sandboxed), statistics.median(in_process)
    print(f"scripted backend, {steps} steps")
    print(f"  parse                  {_ms(parse)} per step")
    print(f"  execute (sandboxed)    {_ms(median_sandboxed)} per step (median)")
    print(f"  execute (in-process)   {_ms(median_local)} per step (median, baseline)")
    print(f"  observation message    {_ms(observe)} per step")
    print(f"  whole loop, outside the backend: {_ms(steady)} per step after the first; "
          f"{_ms(per_step)} per step counting the sandbox start ({len(traj.steps)} steps)")
    print(f"  ratio sandboxed / in-process execution: {median_sandboxed / median_local:.1f}x")


def sandbox_start(starts: int) -> None:
    """Median time to a sandbox ready for code: forked from the zygote, and as a new interpreter."""
    from t3edge.sandbox import launch

    medians = {}
    with tempfile.TemporaryDirectory() as tmp:
        tools = default_tools(ToolContext(workspace=Path(tmp)))
        first = time.perf_counter()
        with Sandbox(tools, Path(tmp) / "first") as sandbox:
            sandbox.start()
        first = time.perf_counter() - first
        for start in ("fork", "spawn"):
            config = AgentConfig(sandbox_start=start)  # type: ignore[arg-type]
            times = []
            for i in range(starts):
                with Sandbox(tools, Path(tmp) / f"{start}-{i}", config=config) as sandbox:
                    times.append(_once(sandbox.start))
            medians[start] = statistics.median(times)
    print(f"sandbox start, median of {starts} (the process ready for code, confined)")
    why_not = launch.why_not_forking()
    if why_not is None:
        print(f"  forked from the zygote {_ms(medians['fork'])} (target <= 100 ms; the first start, "
              f"which launches the zygote: {_ms(first)})")
    else:
        print(f"  forked from the zygote: not here ({why_not}); each start is a new interpreter")
    print(f"  new interpreter        {_ms(medians['spawn'])} (baseline: every start before the zygote)")
    print(f"  ratio new interpreter / forked: {medians['spawn'] / medians['fork']:.1f}x")


@tool
def echo(ctx: ToolContext, text: str) -> str:
    """Return the text (a tool call that costs nothing itself).

    Args:
        text: any text
    """
    return text


def tool_bound(calls: int) -> None:
    """A small tool call, bounded (worker thread, time limit, notes) and direct."""
    with tempfile.TemporaryDirectory() as tmp:
        tools = ToolSet([echo], ToolContext(workspace=Path(tmp)))
        direct = [_once(lambda: tools.call("echo", ["hi"])) for _ in range(calls)]
        bounded = [_once(lambda: call_bounded("echo", lambda: tools.call("echo", ["hi"]), 30.0))
                   for _ in range(calls)]
    median_direct, median_bounded = statistics.median(direct), statistics.median(bounded)
    print(f"tool call, {calls} calls of a small tool")
    print(f"  bounded                {_ms(median_bounded)} per call (median)")
    print(f"  direct                 {_ms(median_direct)} per call (median, baseline)")
    print(f"  cost of the bound      {_ms(median_bounded - median_direct)} per call (target < 5 ms); "
          f"ratio bounded / direct: {median_bounded / median_direct:.1f}x")


def tiny_mlx(steps: int = 3) -> None:
    try:
        from t3edge.backends import load_backend
        from tinymodels import build_tiny_model, make_test_image
    except ImportError as exc:
        print(f"tiny MLX model: skipped ({exc})")
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = build_tiny_model(root / "tiny", "qwen2_vl")
        image = make_test_image(root / "photo.png", (224, 224))
        inner = load_backend(str(model))
        task = Task(id="bench", query="How big is the image?", attachments=[Attachment.from_path(image)])
        config = AgentConfig(max_steps=steps, generation=GenerationConfig(max_tokens=32))
        script = [format_step(f"Step {i}.", CODE.format(i=i)) for i in range(steps - 1)]
        script.append(format_step("Done.", "final_answer(x)"))
        for label, backend in [("model's own output", TimedBackend(inner)),
                               ("scripted actions, real generation", TimedBackend(inner, script))]:
            inner.reset()
            agent = Agent(backend, config=config, workspace=root / f"ws-{backend.calls}-{label[:5]}")
            start = time.perf_counter()
            traj = agent.run_to_end(task)
            wall = time.perf_counter() - start
            outside = wall - backend.seconds
            print(f"tiny MLX model, {label}: {len(traj.steps)} steps ({traj.ended}), wall {wall:.2f} s, "
                  f"backend {backend.seconds:.2f} s, outside {outside * 1000:.0f} ms = "
                  f"{100 * outside / wall:.1f}% (target < 5%)")
        inner.close()


def _time(fn, repeat: int) -> list[float]:
    return [_once(fn) for _ in range(repeat)]


def _once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--starts", type=int, default=20, help="sandbox starts to time, per method")
    parser.add_argument("--no-mlx", action="store_true", help="skip the tiny MLX model run")
    args = parser.parse_args()
    sandbox_start(args.starts)  # first: its first start launches the zygote
    scripted(args.steps)
    tool_bound(200)
    if not args.no_mlx:
        tiny_mlx()


if __name__ == "__main__":
    main()
