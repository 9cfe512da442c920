"""The agent loop: model output -> parsed code -> sandboxed execution -> observation, as events.

One run is one conversation that only grows (images only in the user message of the task that
attached them), so backends can reuse their KV prefix; a follow-up run continues the conversation
of earlier runs of the same chat (`run(task, history=...)`). Each model call becomes a Step; parse
failures and code errors are explicit steps with corrective feedback and count toward the error
limit; at the step limit the model is asked once more for a final answer.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from t3edge.agent.approval import EDITED_NOTE, Approver, Proposal, rejection_message
from t3edge.agent.config import AgentConfig
from t3edge.agent.events import (
    AgentEvent,
    CodeParsed,
    FinalAnswer,
    Notice,
    ObservationEvent,
    ParseFailed,
    RunFinished,
    StepError,
    StepFinished,
    StepStarted,
    TokenDelta,
)
from t3edge.agent.executor import ExecResult, Sandbox
from t3edge.agent.prompt import system_prompt
from t3edge.backends.base import Backend, Completion, GenerationConfig, ImagePart, Message, TextDelta
from t3edge.config import data_dir
from t3edge.conversation import (
    chat_messages,
    check_chain,
    first_messages,
    followup_messages,
    step_messages,
)
from t3edge.errors import ContextFull, T3Error
from t3edge.protocol import (
    END_ACTION,
    PARSE_ERROR_MESSAGES,
    STOP_STRINGS,
    error_message,
    format_step,
    observation_message,
    parse_model_output,
    repeat_message,
    same_code,
    task_message,
    with_final_answer_request,
)
from t3edge.tools import ToolContext, ToolSet, default_tools
from t3edge.trajectory import SandboxReport, Step, Task, Trajectory, safe_name


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for p in folder.rglob("*"):
        try:
            if p.is_file():
                st = p.stat()
                out[str(p)] = (st.st_mtime_ns, st.st_size)
        except OSError:
            continue
    return out


def _link_attachments(files: list[Path], workspace: Path) -> None:
    """Make each attachment reachable by its bare name in the workspace (a read-only link); a link
    whose file has gone (a follow-up given the store's copy) is pointed at the new path."""
    for f in files:
        link = workspace / f.name
        if link.is_symlink() and not link.exists():
            link.unlink()
        if link.exists() or link.is_symlink() or f.parent == workspace:
            continue
        try:
            link.symlink_to(f)
        except OSError:
            shutil.copyfile(f, link)


class Agent:
    """Runs tasks with a backend, tools and a sandboxed executor; see `run`."""

    def __init__(self, backend: Backend, tools: ToolSet | None = None, config: AgentConfig | None = None,
                 workspace: Path | None = None, approver: Approver | None = None) -> None:
        """`approver` decides on each code block when `config.approve == "ask"` (else never called)."""
        self.backend = backend
        self.approver = approver
        self.tools = tools if tools is not None else default_tools()
        config = config or AgentConfig()
        if backend.generation_overrides:  # the model's own sampling needs (registry) win
            config = config.model_copy(update={
                "generation": config.generation.model_copy(update=backend.generation_overrides)})
        self.config = config
        self.workspace = Path(workspace) if workspace is not None else None

    def workspace_for(self, task: Task) -> Path:
        """The working folder of a run: the one given, else `<root>/<task id>`."""
        if self.workspace is not None:
            return self.workspace
        root = self.config.workspace or data_dir() / "workspaces"
        return Path(root) / safe_name(task.id)

    def prompt_style(self) -> str:
        """`full` or `compact`: the setting, or for `auto` compact below the configured context."""
        if self.config.prompt != "auto":
            return self.config.prompt
        limit = self.backend.context_length
        return "compact" if limit is not None and limit < self.config.compact_below_context else "full"

    def generation(self) -> GenerationConfig:
        """A step's sampling settings: with `format = "constrained"` and a backend that can, the
        step grammar is enforced, and only `<end_action>` ends a step (the grammar puts it last,
        so code may print "Observation:")."""
        gen = self.config.generation
        if self.config.format != "constrained" or not self.backend.can_constrain():
            return gen
        stops = [s for s in gen.stop if s not in STOP_STRINGS or s == END_ACTION]
        return gen.model_copy(update={"grammar": "step", "stop": stops})

    def system_prompt(self, tools: ToolSet | None = None) -> str:
        return system_prompt(tools or self.tools, self.config.allowed_imports, style=self.prompt_style(),
                             vision=self.backend.supports_images)

    def run_to_end(self, task: Task, cancel: threading.Event | None = None,
                   history: Sequence[Trajectory] = ()) -> Trajectory:
        """Run a task (a follow-up when `history` is given) and return its Trajectory."""
        trajectory: Trajectory | None = None
        for event in self.run(task, cancel, history):
            if isinstance(event, RunFinished):
                trajectory = event.trajectory
        assert trajectory is not None
        return trajectory

    def run(self, task: Task, cancel: threading.Event | None = None,
            history: Sequence[Trajectory] = ()) -> Iterator[AgentEvent]:
        """Yield the run's events; the last is RunFinished(trajectory). Setting `cancel` stops the
        run (even mid-generation) with `ended == "cancelled"`.

        `history`: the earlier runs of the same chat, in order (each continuing the ones before
        it). The run then continues their conversation with `task` as a new user turn, in the
        chat's working folder, with the earlier attachments still readable; the trajectory records
        them in `continues`. Variables of earlier runs' code do not carry over.
        """
        history = list(history)
        check_chain(history)
        if history and history[0].system_prompt is None:
            raise T3Error(f"run {history[0].task.id!r} has no system prompt, so it cannot be continued")
        workspace = self._workspace(task, history).resolve()
        workspace.mkdir(parents=True, exist_ok=True)
        earlier = [Path(a.path).resolve() for h in history for a in h.task.attachments
                   if Path(a.path).is_file()]
        attachments = list(dict.fromkeys([*earlier, *(Path(a.path).resolve() for a in task.attachments)]))
        _link_attachments(attachments, workspace)
        ctx = ToolContext(workspace=workspace, backend=self.backend, allowed_files=attachments,
                          web=self.config.web, generation=self.config.generation)
        tools = self.tools.with_context(ctx)
        shown = self.backend.supports_images
        text = task_message(task.query, [a.path for a in task.attachments],
                            images_hidden=bool(task.images) and not shown)
        images = [a.path for a in task.images] if shown else []
        if history:
            prompt = history[0].system_prompt or ""
            messages = followup_messages(chat_messages(history), text, images)
        else:
            prompt = self.system_prompt(tools)
            messages = first_messages(prompt, text, images)
        generation = self.generation()
        traj = Trajectory(
            task=task, system_prompt=prompt, task_message=text, images_shown=shown, model=self.backend.model_id,
            backend=self.backend.name, format="constrained" if generation.grammar else "free",
            started_at=time.time(), workspace=str(workspace), continues=[h.task.id for h in history],
        )
        if self.config.format == "constrained" and not generation.grammar:
            yield Notice(_FREE_NOTICE.format(backend=self.backend.name))
        start = time.perf_counter()
        sandbox = Sandbox(tools, workspace, read_files=attachments, config=self.config)
        sandbox.prestart()
        try:
            yield from self._loop(traj, messages, _last_step(history), sandbox, cancel, generation)
        finally:
            sandbox.stop()
            traj.seconds = time.perf_counter() - start
            if sandbox.landlock_abi is not None:
                traj.sandbox = SandboxReport(landlock_abi=sandbox.landlock_abi, seccomp=bool(sandbox.seccomp),
                                             capabilities_dropped=sandbox.capabilities_dropped,
                                             limits_refused=sandbox.limits_refused)
        yield RunFinished(traj)

    # -- the loop ------------------------------------------------------------------------------

    def _workspace(self, task: Task, history: Sequence[Trajectory]) -> Path:
        """A follow-up works in its chat's folder (unless this agent was given one)."""
        chat_folder = history[0].workspace if history else None
        if self.workspace is None and isinstance(chat_folder, str):
            return Path(chat_folder)
        return self.workspace_for(task)

    def followup_overflow(self, history: Sequence[Trajectory], task: Task) -> str | None:
        """Why a follow-up `task` on `history` would not fit the backend's context (estimated as
        the loop does before each call), or None when it fits or there is no history."""
        if not history:
            return None
        if history[-1].ended == "context_full":
            why = history[-1].error or "context full"
            return f"the chat already filled the model's context ({why})"
        messages = followup_messages(chat_messages(history),
                                     task_message(task.query, [a.path for a in task.attachments]),
                                     [a.path for a in task.images])
        return self._context_overflow(messages, _last_step(history))

    def _loop(self, traj: Trajectory, messages: list[Message], earlier_step: Step | None, sandbox: Sandbox,
              cancel: threading.Event | None, generation: GenerationConfig) -> Generator[AgentEvent, None, None]:
        cfg = self.config
        errors = repeats = 0
        final_request = False
        while True:
            index = len(traj.steps)
            if index >= cfg.max_steps:
                final_request = True
                if traj.steps:
                    last = traj.steps[-1]
                    last.feedback = with_final_answer_request(last.feedback)
                    messages[-1] = Message("user", last.feedback)
            if cancel is not None and cancel.is_set():
                traj.ended = "cancelled"
                return
            overflow = self._context_overflow(messages, traj.steps[-1] if traj.steps else earlier_step)
            if overflow:
                traj.ended = "context_full"
                traj.error = overflow
                return
            yield StepStarted(index)
            step_start = time.perf_counter()
            try:
                completion = yield from self._generate(messages, index, cancel, generation)
            except T3Error as exc:
                traj.ended = "context_full" if isinstance(exc, ContextFull) else "backend_error"
                traj.error = str(exc)
                return
            except Exception as exc:  # a backend's own failure still ends the run with its trajectory
                traj.ended = "backend_error"
                traj.error = f"{type(exc).__name__}: {exc}"
                return
            if completion is None:
                traj.ended = "cancelled"
                return
            if generation.grammar and completion.grammar is None:  # e.g. a server refused the grammar
                generation = self.config.generation
                traj.format = "free"
                yield Notice(_FREE_NOTICE.format(backend=self.backend.name))
            step, final = yield from self._act(index, completion, sandbox, cancel, traj.steps)
            if final_request:
                step.kind = "final_answer_request"
            step.seconds = time.perf_counter() - step_start
            traj.steps.append(step)
            messages.extend(step_messages(step))
            yield StepFinished(step)
            if final is not None:
                traj.final_answer = final[0]
                traj.ended = "final_answer"
                yield FinalAnswer(traj.final_answer)
                return
            if cancel is not None and cancel.is_set():
                traj.ended = "cancelled"
                return
            if step.kind == "repeat":
                repeats += 1
                if repeats >= cfg.max_repeats:
                    traj.ended = "loop"
                    traj.error = (f"the model repeated earlier code {repeats} times; "
                                          "it is stuck in a loop")
                    return
            if step.error is not None:
                errors += 1
                if errors >= cfg.max_errors:
                    traj.ended = "error_limit"
                    return
            if final_request:
                traj.ended = "step_limit"
                return

    def _context_overflow(self, messages: Sequence[Message], last: Step | None) -> str | None:
        """Why the next call would not fit the backend's context (estimated from the last call's
        token counts, what follows its output: text at ~4 characters a token and new images by
        the image policy, and the generation budget)."""
        limit = self.backend.context_length
        if not limit or last is None:
            return None
        new_tokens = 0
        for message in reversed(messages):
            if message.role == "assistant":
                break
            new_tokens += len(message.text) // 4 + sum(self._image_tokens(p) for p in message.images)
        needed = last.tokens_in + last.tokens_out + new_tokens + self.config.generation.max_tokens
        if needed <= limit:
            return None
        return (f"the conversation needs about {needed} tokens with the next answer, more than the "
                f"model's context of {limit}; raise backend.context_length or lower max_tokens")

    def _image_tokens(self, part: ImagePart) -> int:
        """About how many tokens an image takes after the backend's image policy (0 if unreadable:
        the backend then reports it)."""
        try:
            if isinstance(part.image, Image.Image):
                size = part.image.size
            else:
                with Image.open(part.image) as img:
                    size = img.size
        except (OSError, ValueError):
            return 0
        policy = self.backend.image_policy
        width, height = policy.target_size(*size)
        return width * height // policy.factor**2

    def _generate(self, messages: list[Message], index: int, cancel: threading.Event | None,
                  generation: GenerationConfig) -> Generator[AgentEvent, None, Completion | None]:
        """Stream one model call; None when cancelled (the backend stream is closed)."""
        stream = self.backend.stream(messages, generation)
        try:
            for item in stream:
                if cancel is not None and cancel.is_set():
                    return None
                if isinstance(item, TextDelta):
                    if item.text:
                        yield TokenDelta(index, item.text)
                elif isinstance(item, Completion):
                    return item
        finally:
            stream.close()
        raise T3Error(f"the {self.backend.name} backend ended a stream without a completion")

    def _act(self, index: int, completion: Completion, sandbox: Sandbox, cancel: threading.Event | None,
             earlier: Sequence[Step]) -> Generator[AgentEvent, None, tuple[Step, tuple[Any] | None]]:
        """Parse the model's output and run its code: the Step with its feedback, and `(answer,)`
        when the code called final_answer. Code identical to an `earlier` step's is not run again."""
        text = completion.text
        raw = text + END_ACTION if completion.stop_string == END_ACTION else text
        usage = completion.usage
        step = Step(index=index, raw_output=raw, tokens_in=usage.prompt_tokens,
                    tokens_cached=usage.cached_tokens, tokens_out=usage.generated_tokens)
        parsed = parse_model_output(raw, [END_ACTION] if completion.grammar else STOP_STRINGS)
        step.thought = parsed.thought
        if parsed.code is None:
            problem = parsed.problem or "no_code"
            message = PARSE_ERROR_MESSAGES[problem]
            step.kind, step.error = "parse_error", message
            step.feedback = error_message(index, message)
            yield ParseFailed(index, problem, message)
            return step, None
        step.code = parsed.code
        yield CodeParsed(index, parsed.thought, parsed.code, list(parsed.notes))
        repeated = next((s for s in earlier if s.code is not None and s.kind != "rejected"
                         and same_code(s.code, parsed.code)), None)
        if repeated is not None:
            message = repeat_message(repeated.index)
            step.kind, step.error = "repeat", message
            step.feedback = error_message(index, message)
            yield StepError(index, message)
            return step, None
        code = parsed.code
        if self.approver is not None and self.config.approve == "ask":
            decision = self.approver(Proposal(index, parsed.thought, parsed.code))
            if decision.action == "reject":
                message = rejection_message(decision.reason)
                step.kind, step.error, step.approval = "rejected", message, "rejected"
                step.feedback = error_message(index, message)
                yield StepError(index, message)
                return step, None
            step.approval = "approved"
            if decision.action == "edit" and decision.code is not None and decision.code != parsed.code:
                code = decision.code
                step.approval, step.proposed_code, step.code = "edited", parsed.code, code
                step.raw_output = format_step(parsed.thought or "", code)  # the model sees what ran
                yield CodeParsed(index, parsed.thought, code, [EDITED_NOTE])
        before = _snapshot(sandbox.workspace)
        try:
            result = sandbox.run(code, cancel)
        except T3Error as exc:
            result = ExecResult(error=str(exc))
        after = _snapshot(sandbox.workspace)
        step.produced_files = sorted(p for p, sig in after.items() if before.get(p) != sig)
        step.tools_called = result.tools_called
        if result.error is not None:
            step.error = result.error
            step.observation = result.logs or None
            feedback_text = f"{result.logs.rstrip()}\n{result.error}" if result.logs.strip() else result.error
            step.feedback = error_message(index, feedback_text)
            yield StepError(index, result.error)
            return step, None
        if result.is_final:
            step.observation = result.logs
            if result.logs.strip():
                yield ObservationEvent(index, result.logs, step.produced_files)
            return step, (result.output,)
        step.observation = result.logs
        step.feedback = observation_message(index, result.logs)
        yield ObservationEvent(index, step.feedback.split("\n", 1)[1], step.produced_files)
        return step, None


_FREE_NOTICE = ("steps are decoded free: the {backend} backend cannot enforce the step format here "
                "(agent.format = \"constrained\" needs llama.cpp, MLX or a server that takes a grammar)")


def _last_step(history: Sequence[Trajectory]) -> Step | None:
    """The last model call of a chat's earlier runs (the best count of the context they use)."""
    for traj in reversed(history):
        if traj.steps:
            return traj.steps[-1]
    return None
