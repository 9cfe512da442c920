"""`t3edge flywheel`: the paper's claim in one command, on a local student.

Stages, each recorded in `DIR/flywheel.json` when done, so a killed run resumes at the stage it
was in (and the stages resume inside: the teacher and the evaluations skip finished tasks,
training continues from its last checkpoint):

1. student   the student's GGUF as an MLX folder (`convert from-gguf`), to train on
2. tasks     train and test splits of the built-in task suite (test holds families train lacks)
3. teach     trajectories of the train tasks: the offline reference solutions run through the real
             agent loop (`builtin`), or an OpenAI-compatible teacher through the data engine's
             trajectory and verifier stages (a URL); both kept only when the answer checks
4. train     LoRA on the trajectories (assistant turns only)
5. export    DIR/adapter/ (MLX) and DIR/adapter.gguf (llama.cpp, for the student's own GGUF)
6. before    the untuned student on the test split (llama.cpp)
7. after     the tuned student on the test split (llama.cpp + adapter.gguf)
8. report    DIR/report.md and DIR/report.png, before vs after, and on the held-out families

This chains wings (converters, synth), which only the command line may do.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import click
from pydantic import BaseModel, Field
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from t3edge.errors import T3Error

STATE = "flywheel.json"
STAGES = ("student", "tasks", "teach", "train", "export", "before", "after", "report")
console = Console(stderr=True, highlight=False)


class FlywheelSettings(BaseModel):
    """What a flywheel run is made of; a resumed run must use the same settings."""

    student: str = Field("smollm2-135m", description="registry name or .gguf file of the student")
    teacher: str = Field("builtin", description="`builtin`, or an OpenAI-compatible URL (URL#model)")
    train_tasks: int = Field(48, ge=1)
    test_tasks: int = Field(60, ge=1)
    seed: int = 0
    epochs: float = Field(2.0, gt=0)
    learning_rate: float = Field(2e-4, gt=0)
    lora_rank: int = Field(16, ge=1)
    lora_alpha: float = Field(32.0, gt=0)
    lora_layers: int | None = Field(None, ge=1, description="adapt only the last N blocks")
    max_length: int = Field(4096, ge=256)
    eval_steps: int = Field(4, ge=1, description="agent steps per test task")
    eval_tokens: int = Field(256, ge=16, description="tokens per step at evaluation")
    eval_format: Literal["free", "constrained"] = Field(
        "constrained", description="step decoding at evaluation (agent.format), the same before and after")


class State(BaseModel):
    settings: FlywheelSettings
    done: dict[str, float] = Field(default_factory=dict)  # stage -> seconds it took
    notes: dict[str, Any] = Field(default_factory=dict)


class Flywheel:
    """One run folder and its stages."""

    def __init__(self, out: Path, settings: FlywheelSettings) -> None:
        self.out = out
        self.settings = settings
        self.state = self._load_state()
        self.student_gguf = self._student_gguf()

    # -- state ---------------------------------------------------------------------------------
    def _load_state(self) -> State:
        path = self.out / STATE
        if not path.is_file():
            if self.out.is_dir() and any(self.out.iterdir()):
                raise T3Error(f"{self.out} is not empty and holds no flywheel run",
                              hint="give a new folder with --out")
            self.out.mkdir(parents=True, exist_ok=True)
            state = State(settings=self.settings)
            self._save(state)
            return state
        try:
            state = State.model_validate_json(path.read_text())
        except ValueError as exc:
            raise T3Error(f"{path} is damaged: {exc}", hint="start again in a new folder") from exc
        if state.settings != self.settings:
            changed = [k for k, v in self.settings.model_dump().items() if state.settings.model_dump()[k] != v]
            raise T3Error(f"{self.out} was started with other settings ({', '.join(changed)})",
                          hint="run the same command to resume it, or give a new --out")
        return state

    def _save(self, state: State | None = None) -> None:
        path = self.out / STATE
        tmp = path.with_suffix(".tmp")
        tmp.write_text((state or self.state).model_dump_json(indent=2))
        tmp.replace(path)

    def _student_gguf(self) -> Path:
        from t3edge.models import load_models_config, resolve_model

        resolved = resolve_model(self.settings.student, load_models_config(), "gguf", with_adapter=False)
        if resolved.kind != "gguf" or not resolved.path:
            raise T3Error(f"the student {self.settings.student} is not a GGUF model",
                          hint="give a registry name with a GGUF build or a .gguf file")
        return Path(resolved.path)

    # -- paths ---------------------------------------------------------------------------------
    @property
    def student_mlx(self) -> Path:
        return self.out / "student-mlx"

    def tasks(self, split: str) -> Path:
        return self.out / "tasks" / split

    @property
    def trajectories(self) -> Path:
        return self.out / "teacher" / "trajectories.jsonl"

    @property
    def adapter_gguf(self) -> Path:
        return self.out / "adapter.gguf"

    def eval_dir(self, which: str) -> Path:
        return self.out / "eval" / which

    # -- running -------------------------------------------------------------------------------
    def run(self) -> Path:
        steps: dict[str, Callable[[], None]] = {
            "student": self.make_student, "tasks": self.make_tasks, "teach": self.teach,
            "train": self.train, "export": self.export, "before": lambda: self.evaluate("before"),
            "after": lambda: self.evaluate("after"), "report": self.report,
        }
        for number, name in enumerate(STAGES, 1):
            if name in self.state.done:
                console.print(f"[dim]{number}/{len(STAGES)} {name}: done ({self.state.done[name]:.0f} s)[/dim]")
                continue
            console.rule(f"{number}/{len(STAGES)} {name}")
            start = time.perf_counter()
            steps[name]()
            self.state.done[name] = time.perf_counter() - start
            self._save()
        return self.out / "report.md"

    def make_student(self) -> None:
        from converters.from_gguf import convert_from_gguf

        if self.student_mlx.exists():  # a conversion killed halfway
            shutil.rmtree(self.student_mlx)
        with console.status(f"converting {escape(self.student_gguf.name)} to MLX"):
            convert_from_gguf(self.student_gguf, self.student_mlx)

    def make_tasks(self) -> None:
        from t3edge.tasks import make_tasks

        s = self.settings
        for split, n in (("train", s.train_tasks), ("test", s.test_tasks)):
            folder = self.tasks(split)
            if folder.exists():
                shutil.rmtree(folder)
            with StageBar(f"making {split} tasks") as (bar, task):
                made = make_tasks(folder, split, n, s.seed, progress=lambda done, total: bar.update(
                    task, completed=done, total=total))  # type: ignore[arg-type]
            console.print(f"{split}: {len(made)} tasks in {escape(str(folder))}")

    def teach(self) -> None:
        from t3edge.tasks import load_tasks

        records, problems = load_tasks(self.tasks("train"))
        for problem in problems:
            console.print(f"[yellow]skipped {escape(str(problem))}[/yellow]")
        if self.settings.teacher == "builtin":
            kept, dropped = self._teach_builtin(records)
        else:
            kept, dropped = self._teach_api(records)
        self.state.notes["teacher"] = {"kept": kept, "dropped": dropped}
        console.print(f"teacher: kept {kept} of {len(records)} trajectories"
                      + (f"; dropped {', '.join(f'{n} {r}' for r, n in sorted(dropped.items()))}" if dropped else ""))
        if kept == 0:
            raise T3Error("the teacher produced no usable trajectory",
                          hint=f"see {self.trajectories.parent / 'dropped.jsonl'} for why each was dropped")

    def _student_shape(self) -> tuple[int, bool]:
        """The context length and vision the student has when llama.cpp serves it (they choose its
        system prompt): a GGUF without an mmproj sees no images."""
        from t3edge.backends.llama import DEFAULT_CONTEXT
        from t3edge.gguf_check import check_gguf
        from t3edge.models import load_models_config

        info = check_gguf(self.student_gguf, expect_kind="model")
        trained = int(info.metadata.get(f"{info.architecture}.context_length", DEFAULT_CONTEXT))
        return load_models_config().backend.context_length or min(trained, DEFAULT_CONTEXT), False

    def _teach_builtin(self, records: list[Any]) -> tuple[int, dict[str, int]]:
        from t3edge.tasks import teach

        context, vision = self._student_shape()
        with StageBar("teaching (reference solutions)") as (bar, task):
            teach(records, self.tasks("train"), self.trajectories, context_length=context, vision=vision,
                  progress=lambda done, total: bar.update(task, completed=done, total=total))
        return self._teach_summary()

    def _teach_summary(self) -> tuple[int, dict[str, int]]:
        """(trajectories kept, dropped by reason), from the teacher's files."""
        from t3edge.jsonl import iter_jsonl

        dropped: dict[str, int] = {}
        dropped_file = self.trajectories.parent / "dropped.jsonl"
        if dropped_file.is_file():
            for row in iter_jsonl(dropped_file, on_bad_line="skip"):
                dropped[str(row.get("reason"))] = dropped.get(str(row.get("reason")), 0) + 1
        return _count_lines(self.trajectories), dropped

    def _teach_api(self, records: list[Any]) -> tuple[int, dict[str, int]]:
        """The data engine's agent and trajectory-verifier stages on the suite's tasks (in place of
        its synthesized queries); a trajectory is kept when the verifier accepts it and its answer
        passes the task's checker. Kept trajectories get the student's system prompt."""
        from synth.config import ApiSettings, SynthConfig, TrajectorySettings
        from synth.items import MadeFile, SynthItem
        from synth.pipeline import run_pipeline
        from synth.store import RunStore
        from t3edge.tasks import check
        from t3edge.jsonl import JsonlWriter
        from t3edge.trajectory import Verdict

        url, _, model = self.settings.teacher.partition("#")
        run = self.out / "teacher" / "engine"
        cfg = SynthConfig(api=ApiSettings(base_url=url, model=model or "default"),
                          trajectories=TrajectorySettings(max_steps=self.settings.eval_steps + 2, max_errors=3))
        folder = self.tasks("train").resolve()
        store = RunStore(run)
        queued = {item.id for item in store.items("verify_query")}
        for r in records:
            if r.id not in queued:  # the suite's tasks take the place of verified synthesized ones
                files = [MadeFile(name=Path(f).stem, file_type=Path(f).suffix.lstrip("."), path=str(folder / f),
                                  source="generated", description=r.family) for f in r.files]
                store.append("verify_query", SynthItem(id=r.id, query=r.query, files=files,
                                                       query_verdict=Verdict(correct=True)))
        store.close()
        with console.status(f"teaching with {escape(self.settings.teacher)}"):
            run_pipeline(cfg, run, stages=["trajectories", "verify_traj"])
        store = RunStore(run)
        by_id = {r.id: r for r in records}
        prompt = self._student_prompt()
        self.trajectories.parent.mkdir(parents=True, exist_ok=True)
        self.trajectories.unlink(missing_ok=True)  # rebuilt whole from the engine's store, which resumes
        dropped_file = self.trajectories.parent / "dropped.jsonl"
        dropped_file.unlink(missing_ok=True)
        with JsonlWriter(self.trajectories) as kept, JsonlWriter(dropped_file) as dropped:
            for item in store.items("verify_traj"):
                traj, record = item.trajectory, by_id.get(item.id)
                verdict = traj.verdicts.get("trajectory") if traj is not None else None
                reason = ("no_trajectory" if traj is None or record is None else
                          "verifier_rejected" if verdict is not None and verdict.correct is False else
                          None if check(record, traj.final_answer) else "wrong_answer")
                if reason is not None:
                    dropped.write({"id": item.id, "family": record.family if record else "", "reason": reason})
                    continue
                traj.meta.update({"teacher": self.settings.teacher, "family": record.family})
                kept.write(traj.model_copy(update={"system_prompt": prompt}))
            for gone in store.dropped():
                dropped.write({"id": gone.id, "family": by_id[gone.id].family if gone.id in by_id else "",
                               "reason": gone.reason})
        return self._teach_summary()

    def _student_prompt(self) -> str:
        """The system prompt the student gets at inference (its context and vision choose it)."""
        from t3edge.agent import Agent
        from t3edge.backends.replay import ReplayBackend

        context, vision = self._student_shape()
        backend = ReplayBackend([])
        backend.context_length, backend.supports_images = context, vision
        return Agent(backend).system_prompt()

    def train(self) -> None:
        from t3edge.train.checkpoints import latest_checkpoint
        from t3edge.train.config import LoraSettings, TrainConfig
        from t3edge.train.trainer import train

        s = self.settings
        run = self.out / "train"
        cfg = TrainConfig(
            model=str(self.student_mlx), data=[str(self.trajectories)], out=str(run), max_length=s.max_length,
            epochs=s.epochs, learning_rate=s.learning_rate, min_learning_rate=s.learning_rate / 10,
            warmup_steps=4, valid_fraction=0.1, steps_per_eval=25, steps_per_save=10, seed=s.seed,
            lora=LoraSettings(rank=s.lora_rank, alpha=s.lora_alpha, dropout=0.0, num_layers=s.lora_layers),
        )
        train(cfg, resume=latest_checkpoint(run) is not None)

    def export(self) -> None:
        from t3edge.cli.train import export_adapter

        adapter = self.out / "adapter"
        if adapter.exists():
            shutil.rmtree(adapter)
        shutil.copytree(self.out / "train" / "adapter", adapter)
        self.adapter_gguf.unlink(missing_ok=True)
        export_adapter(adapter, self.student_mlx, "gguf", self.adapter_gguf)
        console.print(f"adapter: {escape(str(adapter))} and {escape(str(self.adapter_gguf))}")

    def evaluate(self, which: str) -> None:
        from t3edge.eval.config import load_eval_config
        from t3edge.eval.jobs import prepare_run, run_job

        s = self.settings
        cfg = load_eval_config({"max_steps": s.eval_steps})
        run = prepare_run("tasks", str(self.student_gguf), cfg, data=self.tasks("test"), backend="gguf",
                          adapter=str(self.adapter_gguf) if which == "after" else None, out=self.eval_dir(which),
                          agent_overrides={"generation.max_tokens": s.eval_tokens, "format": s.eval_format})
        outcome, summary = run_job(run)
        if summary is None:
            raise T3Error(f"{outcome.total - outcome.finished} test tasks did not finish",
                          hint="run the same command again: finished tasks are kept")

    def report(self) -> None:
        """report.md and report.png: the student before and after tuning, side by side."""
        before, after = (json.loads((self.eval_dir(w) / "summary.json").read_text())["metrics"]
                         for w in ("before", "after"))
        training = _training_figures(self.out / "train" / "metrics.jsonl")
        lines = [f"# Flywheel: {self.settings.student}, teacher {self.settings.teacher}", "",
                 f"{before['counts']['items']} held-out test tasks ({before['counts']['held_out']} of them from "
                 "families that are not in the training split); the same tasks before and after tuning.", ""]
        for group, title in (("all", "All test tasks"), ("held_out", "Held-out families only"),
                             ("train_families", "Families seen in training")):
            lines += [f"## {title}", "", "| metric | untuned | tuned | change |", "|---|---:|---:|---:|"]
            for key, label in METRICS:
                a, b = before[group].get(key), after[group].get(key)
                change = f"{b - a:+.1f}" if a is not None and b is not None else "-"
                lines.append(f"| {label} | {_pct(a)} | {_pct(b)} | {change} |")
            lines.append("")
        lines += ["## Per family (AnsAcc)", "", "| family | held out | tasks | untuned | tuned |", "|---|---|---:|---:|---:|"]
        for name, fa in before["families"].items():
            fb = after["families"].get(name, {})
            lines.append(f"| {name} | {'yes' if fa['held_out'] else 'no'} | {fa['n']} | {_pct(fa['answer_acc'])} | "
                         f"{_pct(fb.get('answer_acc'))} |")
        teacher = self.state.notes.get("teacher", {})
        lines += ["", "## Run", "",
                  f"- teacher: kept {teacher.get('kept', '?')} trajectories; dropped {teacher.get('dropped', {})}",
                  f"- training: {training['updates']} updates, {training['tokens_per_second']:.0f} tokens/s, "
                  f"peak memory {training['peak_memory_gb']:.2f} GB, final loss {training['final_loss']:.3f}",
                  f"- settings: {self.settings.model_dump_json()}",
                  "- stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in self.state.done.items()),
                  f"- adapters: `adapter/` (MLX, base `student-mlx/`) and `adapter.gguf` (llama.cpp, base "
                  f"`{self.student_gguf}`)", ""]
        (self.out / "report.md").write_text("\n".join(lines))
        _plot(before, after, self.out / "report.png")


METRICS = (("answer_acc", "AnsAcc"), ("final_answer_rate", "final-answer rate"),
           ("well_formed_steps", "well-formed steps"), ("code_exec", "CodeExec"), ("tool_choice", "tool choice"))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _training_figures(metrics: Path) -> dict[str, float]:
    from t3edge.jsonl import iter_jsonl

    rows = list(iter_jsonl(metrics, on_bad_line="skip")) if metrics.is_file() else []
    tokens = sum(r["tokens"] for r in rows)
    seconds = sum(r["tokens"] / r["tokens_per_second"] for r in rows if r.get("tokens_per_second"))
    return {"updates": len(rows), "tokens_per_second": tokens / seconds if seconds else 0.0,
            "peak_memory_gb": max((r["peak_memory_gb"] for r in rows), default=0.0),
            "final_loss": rows[-1]["loss"] if rows else float("nan")}


def _plot(before: dict[str, Any], after: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    x = np.arange(len(METRICS))
    for ax, group, title in ((axes[0], "all", "all test tasks"), (axes[1], "held_out", "held-out families")):
        for offset, (data, label) in ((-0.2, (before, "untuned")), (0.2, (after, "tuned"))):
            ax.bar(x + offset, [data[group].get(k) or 0.0 for k, _ in METRICS], 0.4, label=label)
        ax.set_xticks(x, [label for _, label in METRICS], rotation=20)
        ax.set_title(title)
        ax.set_ylim(0, 100)
    axes[0].set_ylabel("%")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _count_lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.is_file() else 0


class StageBar:
    """A one-task rich progress bar: `with StageBar(label) as (bar, task)`."""

    def __init__(self, label: str) -> None:
        self.progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=console, transient=False)
        self.label = label

    def __enter__(self) -> tuple[Progress, Any]:
        self.progress.start()
        return self.progress, self.progress.add_task(self.label, total=None)

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


@click.command()
@click.option("--student", default="smollm2-135m", show_default=True, help="Registry name or .gguf file.")
@click.option("--teacher", default="builtin", show_default=True,
              help="builtin (reference solutions) or an OpenAI-compatible URL (http://host:port/v1#model).")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder (run the same command again to resume).")
@click.option("--train-tasks", type=int, default=48, show_default=True)
@click.option("--test-tasks", type=int, default=60, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--epochs", type=float, default=2.0, show_default=True)
@click.option("--learning-rate", "--lr", type=float, default=2e-4, show_default=True)
@click.option("--lora-rank", type=int, default=16, show_default=True)
@click.option("--lora-layers", type=int, default=None, help="Adapt only the last N blocks (faster).")
@click.option("--eval-steps", type=int, default=4, show_default=True, help="Agent steps per test task.")
@click.option("--eval-tokens", type=int, default=256, show_default=True, help="Tokens per step at evaluation.")
@click.option("--eval-format", type=click.Choice(["free", "constrained"]), default="constrained", show_default=True,
              help="Step decoding at evaluation: by the step grammar, or free.")
def flywheel(student: str, teacher: str, out: Path, train_tasks: int, test_tasks: int, seed: int,
             epochs: float, learning_rate: float, lora_rank: int, lora_layers: int | None,
             eval_steps: int, eval_tokens: int, eval_format: str) -> None:
    """Make tasks, teach, filter, tune the student, export, and evaluate it before and after."""
    from t3edge.blas import relaunch_with_fast_blas

    note = relaunch_with_fast_blas()
    if note:
        console.print(note)
    settings = FlywheelSettings(student=student, teacher=teacher, train_tasks=train_tasks, test_tasks=test_tasks,
                                seed=seed, epochs=epochs, learning_rate=learning_rate, lora_rank=lora_rank,
                                lora_alpha=2.0 * lora_rank, lora_layers=lora_layers, eval_steps=eval_steps,
                                eval_tokens=eval_tokens, eval_format=eval_format)  # type: ignore[arg-type]
    report = Flywheel(out, settings).run()
    click.echo(report.read_text())
    console.print(f"report: {escape(str(report))}; adapters: {escape(str(out / 'adapter'))}, "
                  f"{escape(str(out / 'adapter.gguf'))}")
