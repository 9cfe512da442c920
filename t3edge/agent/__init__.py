"""The T3 agent: code-as-action loop, sandboxed executor, event stream.

`Agent` (the loop, with its tools and sandbox) is imported on first use, so the light parts (the
events, the settings, code approval) can be imported without them, as the terminal app does at
start-up."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from t3edge.agent.config import AgentConfig, load_agent_config

if TYPE_CHECKING:
    from t3edge.agent.loop import Agent

__all__ = ["Agent", "AgentConfig", "load_agent_config"]


def __getattr__(name: str) -> Any:
    if name == "Agent":
        from t3edge.agent.loop import Agent

        return Agent
    raise AttributeError(name)
