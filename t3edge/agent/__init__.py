"""The T3 agent: code-as-action loop, sandboxed executor, event stream."""

from t3edge.agent.config import AgentConfig, load_agent_config
from t3edge.agent.loop import Agent

__all__ = ["Agent", "AgentConfig", "load_agent_config"]
