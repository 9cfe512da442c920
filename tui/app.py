"""The t3edge terminal app: chat with the local agent, sessions, model picker, evaluation.

The app owns the loaded model, the sessions database and the remembered state (theme, last
model); the chat screen owns the conversation. Blocking work (loading a model, running the agent,
an evaluation) happens in thread workers.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widget import Widget

from t3edge.backends import Backend
from t3edge.errors import T3Error
from t3edge.models import BackendKind, load_models_config
from t3edge.trajectory import Trajectory
from tui.runner import ModelFailed, ModelLoaded, load_model
from tui.screens.chat import ChatScreen, ending_notice
from t3edge.chats import ChatStore, restore_attachments
from tui.sessions import aside_notice, export_folder, open_store
from tui.settings import TuiConfig, TuiState, load_tui_config, tui_dir
from tui.widgets.steps import FinalAnswerView, Notice, StepView, UserMessage

if TYPE_CHECKING:
    from t3edge.agent.approval import Approver
    from t3edge.chat import Chat

DARK, LIGHT = "textual-dark", "textual-light"


class T3App(App[None]):
    TITLE = "t3edge"
    CSS_PATH = "t3edge.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+n", "new_chat", "New chat", id="app.new_chat", priority=True),
        Binding("ctrl+o", "sessions", "Sessions", id="app.sessions", priority=True),
        Binding("ctrl+l", "models", "Model", id="app.models", priority=True),
        Binding("ctrl+t", "attach", "Attach", id="app.attach", priority=True),
        Binding("f4", "evaluate", "Evaluate", id="app.evaluate", show=False),
        Binding("f8", "toggle_theme", "Light/dark", id="app.theme", show=False),
    ]

    def __init__(self, *, model: str | None = None, backend_kind: BackendKind | None = None,
                 adapter: str | None = None, session_id: str | None = None,
                 backend: Backend | None = None, store: ChatStore | None = None,
                 config: TuiConfig | None = None, agent_overrides: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.agent_overrides = agent_overrides or {}  # `agent` settings given on the command line
        self.config = config or load_tui_config()
        self.state = TuiState.load()
        self.store = store or open_store()
        self.backend_kind = backend_kind
        self.adapter = adapter
        self.model_spec = model or self.config.model or self.state.last_model or load_models_config().default_model(backend_kind)
        self.backend: Backend | None = backend
        self.model_problem: str | None = None
        self.session_id = session_id

    # -- start -----------------------------------------------------------------------------------

    def get_default_screen(self) -> Screen:
        return ChatScreen()

    def on_mount(self) -> None:
        self.theme = self.state.theme if self.state.theme in self.available_themes else DARK
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        if self.config.keymap:
            self.set_keymap(self.config.keymap)

    async def chat_ready(self) -> None:
        """Called by the chat screen once it is on screen: report, load the model, reopen a session."""
        notice = aside_notice(self.store)
        if notice:
            self.notify(notice, severity="error", timeout=15)
        if self.backend is not None:
            self._show_model(self.backend)
        else:
            self.load_model(self.model_spec)
        if self.session_id is not None:
            await self.open_session(self.session_id)

    @property
    def chat(self) -> ChatScreen:
        for screen in self.screen_stack:
            if isinstance(screen, ChatScreen):
                return screen
        raise LookupError("the chat screen is not open")

    # -- the model -------------------------------------------------------------------------------

    def load_model(self, spec: str) -> None:
        """Load a model in the background (after releasing the current one); the app stays usable."""
        self.model_spec = spec
        self.model_problem = None
        if self.backend is not None:
            self.backend.close()
            self.backend = None
        status = self.chat.status
        status.model, status.backend, status.state = spec, "", "loading model…"
        kind, adapter = self.backend_kind, self.adapter
        self.run_worker(lambda: load_model(self, spec, kind, adapter), thread=True, group="model",
                        name="load-model", exclusive=True, exit_on_error=False)

    def on_model_loaded(self, message: ModelLoaded) -> None:
        if message.spec != self.model_spec:  # a newer choice superseded this load
            message.backend.close()
            return
        self.backend = message.backend
        self.state.last_model = message.spec
        self.state.save()
        self._show_model(message.backend)

    def on_model_failed(self, message: ModelFailed) -> None:
        if message.spec != self.model_spec:
            return
        self.model_problem = f"No model loaded: {message.error}. Choose one with ctrl+l."
        self.chat.status.state = "no model"
        self.chat.log_view.mount(Notice(self.model_problem, "error"))

    def _show_model(self, backend: Backend) -> None:
        status = self.chat.status
        status.model = backend.model_id
        status.backend = backend.name + (" + adapter" if self.adapter else "")
        status.context_size = backend.context_length
        status.state = "ready"

    # -- sessions --------------------------------------------------------------------------------

    def chat_for(self, backend: Backend, history: list[Trajectory], approver: Approver) -> Chat:
        """The Chat the next message runs in: this session (created with its first run), its earlier
        runs with any attachment whose file has gone read back from the store."""
        from t3edge.agent.config import load_agent_config
        from t3edge.chat import Chat

        return Chat(backend, config=load_agent_config(self.agent_overrides), store=self.store,
                    chat_id=self.session_id,
                    history=[restore_attachments(self.store, t, tui_dir() / "files") for t in history],
                    approver=approver)

    async def open_session(self, session_id: str) -> None:
        from t3edge.conversation import chat_chain

        info = self.store.get(session_id)
        self.session_id = session_id
        runs = self.store.runs(session_id)
        try:
            history = chat_chain(runs)
        except T3Error as exc:
            history = []
            self.notify(f"This chat cannot be continued ({exc}); the next message starts afresh.",
                        severity="warning", timeout=10)
        await self.chat.show_runs(runs, history)
        self.sub_title = info.title

    def run_widgets(self, traj: Trajectory) -> list[Widget]:
        """A saved run as it looked live: message, every step (collapsed), answer, how it ended."""
        attachments = restore_attachments(self.store, traj, tui_dir() / "files").task.attachments
        widgets: list[Widget] = [UserMessage(traj.task.query, attachments)]
        widgets += [StepView.finished(step, previews=self.config.image_previews) for step in traj.steps]
        if traj.final_answer is not None:
            widgets.append(FinalAnswerView(traj.final_answer))
        widgets.append(ending_notice(traj))
        return widgets

    async def action_new_chat(self) -> None:
        if self.chat.running:
            self.notify("Cancel the current run first (Esc).", severity="warning")
            return
        self.session_id = None
        self.sub_title = ""
        if self.backend is not None:
            self.backend.reset()
        await self.chat.clear()

    def action_sessions(self) -> None:
        from tui.screens.sessions import SessionsScreen

        self.push_screen(SessionsScreen(self.store))

    @property
    def export_dir(self) -> Path:
        return export_folder(self.config.export_dir)

    def export_session(self, session_id: str, fmt: str) -> Path:
        """Write a session as Markdown (`markdown`) or trajectory JSONL (`jsonl`) to the export folder."""
        target = self.export_dir / f"{session_id}.{'md' if fmt == 'markdown' else 'jsonl'}"
        exporter = self.store.export_markdown if fmt == "markdown" else self.store.export_jsonl
        path = exporter(session_id, target)
        self.notify(f"Exported to {path}")
        return path

    def export_current(self, fmt: str) -> Path | None:
        if self.session_id is None:
            self.notify("Nothing to export yet: send a message first.", severity="warning")
            return None
        return self.export_session(self.session_id, fmt)

    # -- pickers ---------------------------------------------------------------------------------

    def action_models(self) -> None:
        from tui.screens.models import ModelPickerScreen

        if self.chat.running:
            self.notify("Cancel the current run first (Esc), then change the model.", severity="warning")
            return

        def chosen(spec: str | None) -> None:
            if spec:
                if self.adapter is not None:
                    self.notify(f"The adapter {self.adapter} was for the previous model; loading {spec} without it.")
                    self.adapter = None
                self.load_model(spec)

        self.push_screen(ModelPickerScreen(self.model_spec, self.backend_kind), chosen)

    def action_attach(self) -> None:
        from tui.screens.attach import AttachScreen

        def chosen(path: Path | None) -> None:
            if path is not None:
                self.chat.attach(path)

        self.push_screen(AttachScreen(Path.cwd(), previews=self.config.image_previews), chosen)

    def action_evaluate(self) -> None:
        from tui.screens.evaluate import EvaluateScreen

        self.push_screen(EvaluateScreen(self.model_spec, self.backend_kind, self.adapter))

    # -- look and keys ---------------------------------------------------------------------------

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT if self.theme == DARK else DARK

    def _remember_theme(self, _theme: object) -> None:
        self.state.theme = self.theme
        self.state.save()

    def action_copy_answer(self) -> None:
        answers = list(self.chat.query(FinalAnswerView))
        if not answers:
            self.notify("No answer to copy yet.", severity="warning")
            return
        answers[-1].action_copy()

    def action_expand_steps(self, expand: bool = True) -> None:
        for view in self.chat.query(StepView):
            view.collapsed = not expand

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("New chat", "Start an empty conversation (ctrl+n)", self.action_new_chat)
        yield SystemCommand("Sessions", "Open, rename, delete or export saved chats (ctrl+o)", self.action_sessions)
        yield SystemCommand("Choose model", "Registry models and local folders (ctrl+l)", self.action_models)
        yield SystemCommand("Attach a file", "Pick a file or image for the next message (ctrl+t)", self.action_attach)
        yield SystemCommand("Evaluate", "Run GTA or GAIA with a progress bar (f4)", self.action_evaluate)
        yield SystemCommand("Light / dark", "Switch theme; remembered (f8)", self.action_toggle_theme)
        yield SystemCommand("Copy last answer", "Copy the latest final answer", self.action_copy_answer)
        yield SystemCommand("Expand all steps", "Open every step of the chat", self.action_expand_steps)
        yield SystemCommand("Collapse all steps", "Fold every step", lambda: self.action_expand_steps(False))
        yield SystemCommand("Export as Markdown", "Write this chat as Markdown",
                            lambda: self.export_current("markdown"))
        yield SystemCommand("Export as JSONL", "Write this chat's trajectories as JSONL",
                            lambda: self.export_current("jsonl"))

    def on_unmount(self) -> None:
        if self.backend is not None:
            self.backend.close()
        self.store.close()
