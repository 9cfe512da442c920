"""Code approval on the terminal (`t3edge run --approve ask`): after each code block is shown,
the user runs it, edits it in $EDITOR, or rejects it with a reason the model is told."""

from __future__ import annotations

import threading

import click
from rich.console import Console

from t3edge.agent.approval import Approver, Decision, Proposal

QUESTION = "Run this code? [y]es, [e]dit, [n]o"


def terminal_approver(console: Console, cancel: threading.Event) -> Approver:
    """An approver that asks on the terminal (prompts go to stderr, so `--json` output stays clean).
    End of input (Ctrl-D) rejects the block and stops the run."""

    def decide(proposal: Proposal) -> Decision:
        while True:
            try:
                answer = click.prompt(QUESTION, default="y", show_default=False, err=True).strip().lower()
                if answer in ("y", "yes"):
                    return Decision("run")
                if answer in ("n", "no"):
                    reason = click.prompt("Why? (told to the model; Enter: no reason)", default="",
                                          show_default=False, err=True)
                    return Decision("reject", reason=reason)
                if answer in ("e", "edit"):
                    edited = click.edit(proposal.code, extension=".py", require_save=False)
                    if edited is not None and edited.strip():
                        return Decision("edit", code=edited.rstrip("\n"))
                    console.print("[yellow]the edited code is empty: nothing changed[/yellow]")
                    continue
            except click.Abort:
                cancel.set()
                return Decision("reject", reason="the user stopped the run")
            console.print("answer y, e or n")

    return decide
