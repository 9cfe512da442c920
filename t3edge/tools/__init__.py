"""The tools that model-written code can call (docs/agent.md, "Tools"), with offline defaults."""

from __future__ import annotations

from t3edge.tools.base import Tool, ToolContext, ToolError, ToolInput, ToolSet, tool
from t3edge.tools.extras import image_generator, segmentation
from t3edge.tools.files import inspect_file_as_text
from t3edge.tools.image_ops import image_edit
from t3edge.tools.ocr import ocr
from t3edge.tools.vision import facedetection, objectlocation, visualizer
from t3edge.tools.web import ask_search_agent

__all__ = [
    "DEFAULT_TOOLS",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolInput",
    "ToolSet",
    "ask_search_agent",
    "default_tools",
    "facedetection",
    "image_edit",
    "image_generator",
    "inspect_file_as_text",
    "objectlocation",
    "ocr",
    "segmentation",
    "tool",
    "visualizer",
]

DEFAULT_TOOLS: tuple[Tool, ...] = (
    visualizer, inspect_file_as_text, objectlocation, facedetection, ocr, image_edit,
    ask_search_agent, segmentation, image_generator,
)


def default_tools(ctx: ToolContext | None = None) -> ToolSet:
    """The paper's nine tool kinds, bound to `ctx` when given."""
    return ToolSet(DEFAULT_TOOLS, ctx)
