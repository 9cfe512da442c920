"""GTA's 14 tools under their own names and argument names, backed by t3edge's tools, so that a
GTA run's tool metrics compare like with like. Every call (arguments, error) is recorded.

Offline backing: OCR, ImageDescription, RegionAttributeDescription, TextToBbox, MathOCR and
CountGivenObject use the loaded VLM / bundled OCR; DrawBox and AddText use PIL; Calculator is a
safe arithmetic evaluator; Solver and Plot run their sympy / matplotlib code in the agent's
confined sandbox. GoogleSearch needs the web (`agent.web = true`); TextToImage and
ImageStylization need a diffusion model: without them a call is a clear error observation.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Sequence
from typing import Any

from PIL import Image

from t3edge.eval.items import ToolCall
from t3edge.images import load_image
from t3edge.tools import ToolContext, ToolError, ToolSet, ask_search_agent, image_edit, image_generator, ocr, tool
from t3edge.tools.vision import ask_vlm, objectlocation

_NUM = r"-?\d+(?:\.\d+)?"


def _bbox(value: str | list, img: Image.Image | None = None) -> tuple[int, int, int, int]:
    nums = [float(v) for v in re.findall(_NUM, value)] if isinstance(value, str) else list(value)
    if len(nums) != 4:
        raise ToolError(f"bbox should be four numbers '(x1, y1, x2, y2)', got {value!r}")
    x1, y1, x2, y2 = (int(round(float(v))) for v in nums)
    if img is not None:
        x1, x2 = max(0, min(x1, x2)), min(img.width, max(x1, x2))
        y1, y2 = max(0, min(y1, y2)), min(img.height, max(y1, y2))
    if x2 <= x1 or y2 <= y1:
        raise ToolError(f"bbox {value!r} is empty")
    return x1, y1, x2, y2


def _fmt_box(box: Sequence[int]) -> str:
    return "({}, {}, {}, {})".format(*box)


def _crop(ctx: ToolContext, image: str, bbox: str | list | None) -> str:
    path = ctx.input_path(image, what="image")
    if bbox is None:
        return str(path)
    img = load_image(path)
    out = ctx.output_path(f"{path.stem}_region", ".png")
    img.crop(_bbox(bbox, img)).save(out)
    return str(out)


@tool(name="OCR")
def gta_ocr(ctx: ToolContext, image: str) -> str:
    """Recognize the text in an image; returns the text lines.

    Args:
        image: path of the input image
    """
    return "\n".join(ocr(ctx, image_path=image))


@tool(name="ImageDescription")
def image_description(ctx: ToolContext, image: str) -> str:
    """Describe the content of an image.

    Args:
        image: path of the input image
    """
    return ask_vlm(ctx, "ImageDescription", "Describe this image in detail.", image)


@tool(name="RegionAttributeDescription")
def region_attribute_description(ctx: ToolContext, image: str, bbox: str | list, attribute: str) -> str:
    """Describe an attribute (color, text, count...) of the region of an image inside a box.

    Args:
        image: path of the input image
        bbox: the region as '(x1, y1, x2, y2)' in pixels
        attribute: the attribute to describe
    """
    region = _crop(ctx, image, bbox)
    return ask_vlm(ctx, "RegionAttributeDescription", f"Describe the {attribute} of this image region.", region)


@tool(name="TextToBbox")
def text_to_bbox(ctx: ToolContext, image: str, text: str, top1: bool = True) -> str:
    """Find an object described by a text in an image; returns its box '(x1, y1, x2, y2)'.

    Args:
        image: path of the input image
        text: the object to find
        top1: return only the best box (otherwise every box, one per line)
    """
    boxes = objectlocation(ctx, object=text, image_path=image)
    if not boxes:
        return f"no {text} found in the image"
    return _fmt_box(boxes[0]) if top1 else "\n".join(_fmt_box(b) for b in boxes)


@tool(name="CountGivenObject")
def count_given_object(ctx: ToolContext, image: str, text: str, bbox: str | list | None = None) -> int:
    """Count the objects of a kind in an image (or in one region of it).

    Args:
        image: path of the input image
        text: the object to count
        bbox: optional region '(x1, y1, x2, y2)' to count in
    """
    return len(objectlocation(ctx, object=text, image_path=_crop(ctx, image, bbox)))


@tool(name="MathOCR")
def math_ocr(ctx: ToolContext, image: str) -> str:
    """Read the mathematical expressions in an image as LaTeX.

    Args:
        image: path of the input image
    """
    return ask_vlm(ctx, "MathOCR", "Transcribe the mathematics in this image as LaTeX, nothing else.", image)


@tool(name="DrawBox")
def draw_box(ctx: ToolContext, image: str, bbox: str | list, annotation: str | None = None) -> str:
    """Draw a box on an image, with an optional label; returns the path of the new image.

    Args:
        image: path of the input image
        bbox: the box '(x1, y1, x2, y2)' in pixels
        annotation: optional label written by the box
    """
    label = f' label "{annotation}"' if annotation else ""
    return image_edit(ctx, prompt=f"draw box {','.join(map(str, _bbox(bbox)))} red{label}", image_path=image)


_POSITIONS = {"l": 0.05, "m": 0.5, "r": 0.9, "t": 0.05, "b": 0.9}


def _position(position: str, img: Image.Image) -> tuple[int, int]:
    nums = [float(v) for v in re.findall(_NUM, position)]
    if len(nums) >= 2:
        return int(nums[0]), int(nums[1])
    letters = position.strip().lower()
    if len(letters) == 2 and letters[0] in "lmr" and letters[1] in "tmb":
        return int(img.width * _POSITIONS[letters[0]]), int(img.height * _POSITIONS[letters[1]])
    raise ToolError(f"position should be '(x, y)' or two letters like 'lt', 'mm', 'rb', got {position!r}")


@tool(name="AddText")
def add_text(ctx: ToolContext, image: str, text: str, position: str, color: str = "red") -> str:
    """Write a text on an image; returns the path of the new image.

    Args:
        image: path of the input image
        text: the text to write
        position: '(x, y)' in pixels, or two letters: l/m/r then t/m/b (e.g. 'mt' = middle top)
        color: text color
    """
    x, y = _position(position, load_image(ctx.input_path(image, what="image")))
    safe = text.replace('"', "'")
    return image_edit(ctx, prompt=f'add text "{safe}" at {x},{y} {color}', image_path=image)


@tool(name="GoogleSearch")
def google_search(ctx: ToolContext, query: str, k: int = 10) -> str:
    """Search the web; returns a short report of the top results.

    Args:
        query: the search keywords
        k: how many results to use
    """
    if not ctx.web:
        raise ToolError("GoogleSearch is unavailable offline (web access is off); answer without searching")
    return ask_search_agent(ctx, query=query)


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_NAMES: dict[str, Any] = {"pi": math.pi, "e": math.e, **{n: getattr(math, n) for n in (
    "sqrt", "sin", "cos", "tan", "asin", "acos", "atan", "log", "log10", "log2", "exp", "floor",
    "ceil", "factorial", "radians", "degrees")}, "abs": abs, "round": round, "min": min, "max": max}


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 1000:
            raise ToolError("Calculator: exponent too large (at most 1000)")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return _NAMES[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _NAMES and not node.keywords:
        return _NAMES[node.func.id](*(_eval(a) for a in node.args))
    raise ToolError(f"Calculator only evaluates arithmetic; cannot use {ast.unparse(node)!r}")


@tool(name="Calculator")
def calculator(ctx: ToolContext, expression: str) -> str:
    """Evaluate an arithmetic expression (+ - * / // % **, parentheses, sqrt, log, sin, pi...).

    Args:
        expression: the expression, e.g. '(3 + 4) * 2 / sqrt(2)'
    """
    try:
        tree = ast.parse(expression.replace("^", "**").replace("×", "*").replace("÷", "/"), mode="eval")
        value = _eval(tree)
    except SyntaxError as exc:
        raise ToolError(f"Calculator could not parse {expression!r}") from exc
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise ToolError(f"Calculator: {type(exc).__name__}: {exc}") from exc
    return str(round(value, 10) if isinstance(value, float) else value)


def _run_solution(ctx: ToolContext, command: str, tail: str, name: str) -> str:
    """Run `command` (which defines `solution()`) and then `tail` in the agent's confined sandbox."""
    from t3edge.agent.config import AgentConfig
    from t3edge.agent.executor import Sandbox

    code = re.sub(r"^\s*```(?:python|py)?\s*\n|\n\s*```\s*$", "", command.strip())
    with Sandbox(ToolSet(), ctx.workspace, read_files=ctx.allowed_files, config=AgentConfig()) as box:
        result = box.run(f"{code}\n{tail}")
    if result.error:
        raise ToolError(f"{name}: {result.error}")
    return result.logs.strip()


@tool(name="Solver")
def solver(ctx: ToolContext, command: str) -> str:
    """Solve a math problem with sympy: the command is Python defining `solution()` that returns the answer.

    Args:
        command: Python code (import sympy; def solution(): ... return answer)
    """
    return _run_solution(ctx, command, "print(solution())", "Solver")


@tool(name="Plot")
def plot(ctx: ToolContext, command: str) -> str:
    """Draw a chart with matplotlib: the command is Python defining `solution()` returning the figure; returns the image path.

    Args:
        command: Python code (import matplotlib.pyplot as plt; def solution(): ... return fig)
    """
    out = ctx.output_path("plot", ".png")
    _run_solution(ctx, command, f"solution().savefig({str(out)!r})", "Plot")
    return str(out)


@tool(name="TextToImage")
def text_to_image(ctx: ToolContext, keywords: str) -> str:
    """Generate an image from keywords; returns the image path (needs a local diffusion model).

    Args:
        keywords: what the image should show
    """
    return image_generator(ctx, prompt=keywords)


@tool(name="ImageStylization")
def image_stylization(ctx: ToolContext, image: str, instruction: str) -> str:
    """Restyle an image following an instruction; returns the image path (needs a diffusion model).

    Args:
        image: path of the input image
        instruction: the style change, e.g. 'turn it into a watercolor'
    """
    ctx.input_path(image, what="image")
    raise ToolError("ImageStylization needs an instruction-guided diffusion model, which is not available "
                    "offline in t3edge; answer without it")


GTA_TOOLSET = (
    gta_ocr, image_description, region_attribute_description, text_to_bbox, draw_box, add_text,
    google_search, calculator, solver, plot, math_ocr, count_given_object, text_to_image, image_stylization,
)


class RecordingToolSet(ToolSet):
    """A ToolSet that logs every call it is asked to make, including ones that fail."""

    def __init__(self, tools: Sequence[Any] = (), ctx: ToolContext | None = None,
                 log: list[ToolCall] | None = None) -> None:
        super().__init__(tools, ctx)
        self.log: list[ToolCall] = log if log is not None else []

    def with_context(self, ctx: ToolContext) -> RecordingToolSet:
        return RecordingToolSet(list(self), ctx, self.log)

    def subset(self, names: Sequence[str]) -> RecordingToolSet:
        return RecordingToolSet(list(super().subset(names)), self.ctx, self.log)

    def call(self, name: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
             *, ctx: ToolContext | None = None) -> Any:
        arguments = _named(self[name], args, kwargs or {}) if name in self else dict(kwargs or {})
        try:
            result = super().call(name, args, kwargs, ctx=ctx)
        except ToolError as exc:
            self.log.append(ToolCall(name=name, arguments=arguments, error=str(exc)))
            raise
        self.log.append(ToolCall(name=name, arguments=arguments))
        return result

    def take(self) -> list[ToolCall]:
        """The calls logged since the last take (one item's calls)."""
        calls = list(self.log)
        self.log.clear()
        return calls


def _named(t: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    names = [i.name for i in t.inputs]
    return {**dict(zip(names, args)), **kwargs}


def gta_tools(names: Sequence[str] | None = None) -> RecordingToolSet:
    """GTA's tools (all 14, or those an item lists), recording their calls."""
    tools = RecordingToolSet(GTA_TOOLSET)
    return tools.subset(list(names)) if names is not None else tools


def _json_safe(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else str(value)


def recorded(calls: Sequence[ToolCall]) -> list[ToolCall]:
    """Calls with arguments made JSON-safe (paths and other objects as text)."""
    return [c.model_copy(update={"arguments": {k: _json_safe(v) for k, v in c.arguments.items()}})
            for c in calls]


def own_tool_calls(names: Sequence[str]) -> list[ToolCall]:
    """GTA names for calls made with t3edge's own tools (a run without the GTA tool names)."""
    return [ToolCall(name=OWN_TO_GTA[n]) for n in names if n in OWN_TO_GTA]


OWN_TO_GTA = {
    "ocr": "OCR", "visualizer": "ImageDescription", "objectlocation": "TextToBbox",
    "ask_search_agent": "GoogleSearch", "image_generator": "TextToImage", "image_edit": "DrawBox",
}

