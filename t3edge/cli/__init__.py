"""The `t3edge` command. Subcommands are imported only when used, so `t3edge --help` is fast and
the core never imports a wing (`converters`, `synth`, `tui`) until that wing's command runs."""

from __future__ import annotations

import importlib
import sys
import traceback
import warnings

import click

from t3edge import __version__
from t3edge.errors import T3Error

# name -> ("module:attribute", one-line help shown by `t3edge --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("t3edge.cli.run:run", "Run the agent on a task with files, streaming each step."),
    "chat": ("tui.cli:chat", "Chat with the local agent about your files (terminal app)."),
    "serve": ("t3edge.cli.serve:serve", "Serve the agent as an OpenAI-compatible HTTP endpoint."),
    "logs": ("t3edge.cli.logs:logs", "List, show, search and export the chats of `run` and the app."),
    "generate": ("t3edge.cli.generate:generate", "One VLM answer about images, streamed."),
    "models": ("t3edge.cli.models:models", "List, pull and locate models."),
    "config": ("t3edge.cli.config:config", "Show effective settings and where they come from."),
    "convert": ("converters.cli:convert", "Convert models and adapters: HF, MLX, GGUF, PEFT."),
    "train": ("t3edge.cli.train:train", "LoRA / QLoRA trajectory tuning on MLX."),
    "flywheel": ("t3edge.cli.flywheel:flywheel", "Tasks -> teacher -> tuning -> evaluation of a student, in one command."),
    "eval": ("t3edge.cli.eval:eval_group", "Evaluate on GTA, GAIA and the built-in tasks; score, merge, compare."),
    "tasks": ("t3edge.cli.tasks:tasks_group", "Make the built-in verifiable tasks; teach from their references."),
    "synth": ("synth.cli:synth", "The data engine: synthesize and verify MM-Traj data."),
    "dev": ("t3edge.cli.dev:dev", "Developer tools (tiny test models)."),
}


OWN_PACKAGES = {"t3edge", "tui", "synth", "converters"}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use; T3Error becomes one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        target, help_text = COMMANDS[cmd_name]
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] in OWN_PACKAGES:
                raise
            return _unavailable(cmd_name, help_text, exc)
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, help_text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except T3Error as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.secho(f"error: {exc}", fg="red", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except OSError as exc:  # a file or folder problem: say which, and what to check
            if ctx.obj and ctx.obj.get("debug"):
                raise
            where = f": {exc.filename}" if exc.filename else ""
            click.secho(
                f"error: {exc.strerror or exc}{where} (check the path, its permissions and the free disk space)",
                fg="red", err=True,
            )
            ctx.exit(1)
        except Exception as exc:  # an unexpected failure: one line unless --debug
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.secho(
                f"error: {type(exc).__name__}: {exc} (run again with --debug for the traceback)",
                fg="red", err=True,
            )
            ctx.exit(1)


def _unavailable(name: str, help_text: str, exc: ImportError) -> click.Command:
    missing = exc.name or str(exc)

    @click.command(name=name, help=help_text, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def stub(args: tuple[str, ...]) -> None:
        raise T3Error(
            f"`t3edge {name}` needs a package that is not installed ({missing})",
            hint='install everything with: pip install -e ".[all]"',
        )

    return stub


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="t3edge")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """t3edge: a multimodal tool-using agent (T3-Agent) that runs, tunes and is measured on a laptop."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if debug:
        import logging

        logging.basicConfig(level=logging.DEBUG)


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: str | None = None) -> str:
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> None:
    if "--debug" not in (argv if argv is not None else sys.argv):
        warnings.formatwarning = _one_line_warning  # type: ignore[assignment]
    try:
        cli.main(args=argv, prog_name="t3edge")
    except T3Error as exc:  # raised outside a subcommand (e.g. while resolving one)
        if "--debug" in (argv if argv is not None else sys.argv):
            traceback.print_exc()
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
