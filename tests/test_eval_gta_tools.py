"""GTA's tool names on t3edge's tools: offline backing, clear errors, and the call log."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from t3edge.eval.gta_score import GTA_TOOLS
from t3edge.eval.gta_tools import gta_tools
from t3edge.tools import ToolContext, ToolError


@pytest.fixture()
def tools(tmp_path: Path):
    image = tmp_path / "in.png"
    Image.new("RGB", (64, 48), (255, 255, 255)).save(image)
    ctx = ToolContext(workspace=tmp_path / "ws", allowed_files=[image])
    return gta_tools().with_context(ctx), image


def test_all_fourteen_tools_with_gta_names() -> None:
    assert gta_tools().names == list(GTA_TOOLS)
    assert len(GTA_TOOLS) == 14
    assert gta_tools(["OCR", "Calculator"]).names == ["OCR", "Calculator"]


@pytest.mark.parametrize(("expression", "expected"), [
    ("2+2", "4"), ("(3 + 4) * 2", "14"), ("2^10", "1024"), ("sqrt(16) / 8", "0.5"), ("10 // 3", "3"),
])
def test_calculator(tools, expression: str, expected: str) -> None:
    ts, _ = tools
    assert ts.call("Calculator", kwargs={"expression": expression}) == expected


@pytest.mark.parametrize("expression", ["__import__('os').system('x')", "open('f')", "2 +", "1/0", "9**99999"])
def test_calculator_refuses_what_is_not_arithmetic(tools, expression: str) -> None:
    ts, _ = tools
    with pytest.raises(ToolError, match="Calculator"):
        ts.call("Calculator", kwargs={"expression": expression})


def test_drawbox_and_addtext_write_images(tools) -> None:
    ts, image = tools
    boxed = ts.call("DrawBox", kwargs={"image": str(image), "bbox": "(5, 5, 30, 30)", "annotation": "cat"})
    assert Path(boxed).is_file() and Image.open(boxed).getpixel((5, 17)) != (255, 255, 255)
    texted = ts.call("AddText", kwargs={"image": str(image), "text": "hi", "position": "mt", "color": "blue"})
    assert Path(texted).is_file()
    with pytest.raises(ToolError, match="position"):
        ts.call("AddText", kwargs={"image": str(image), "text": "hi", "position": "somewhere"})
    with pytest.raises(ToolError, match="bbox"):
        ts.call("DrawBox", kwargs={"image": str(image), "bbox": "(1, 2)"})


@pytest.mark.slow
def test_solver_and_plot_run_in_the_agent_sandbox(tools) -> None:
    ts, _ = tools
    command = ("```python\nimport sympy\ndef solution():\n"
               "    x = sympy.symbols('x')\n    return sympy.solve(x**2 - 4, x)\n```")
    answer = ts.call("Solver", kwargs={"command": command})
    assert answer == "[-2, 2]"
    chart = ts.call("Plot", kwargs={"command": "import matplotlib.pyplot as plt\ndef solution():\n"
                                               "    fig = plt.figure()\n    plt.plot([1, 2], [3, 4])\n    return fig"})
    assert Path(chart).is_file() and Path(chart).suffix == ".png"
    with pytest.raises(ToolError, match="solution"):
        ts.call("Solver", kwargs={"command": "x = 1"})
    with pytest.raises(ToolError, match="ZeroDivisionError"):
        ts.call("Solver", kwargs={"command": "def solution():\n    return 1/0"})
    with pytest.raises(ToolError, match="not allowed"):
        ts.call("Solver", kwargs={"command": "def solution():\n    return open('/etc/passwd').read()"})


def test_tools_without_offline_backing_give_clear_errors(tools) -> None:
    ts, image = tools
    with pytest.raises(ToolError, match="offline"):
        ts.call("GoogleSearch", kwargs={"query": "weather"})
    with pytest.raises(ToolError, match="diffusion"):
        ts.call("ImageStylization", kwargs={"image": str(image), "instruction": "watercolor"})
    with pytest.raises(ToolError, match="image generation|diffus"):
        ts.call("TextToImage", kwargs={"keywords": "a cat"})
    with pytest.raises(ToolError, match="loaded model"):
        ts.call("ImageDescription", kwargs={"image": str(image)})  # no backend in this context


def test_every_call_is_recorded_with_its_error(tools) -> None:
    ts, image = tools
    ts.call("Calculator", ["1+1"])
    with pytest.raises(ToolError):
        ts.call("GoogleSearch", kwargs={"query": "x", "k": 3})
    with pytest.raises(ToolError):
        ts.call("Calculator", kwargs={"nope": 1})
    calls = ts.take()
    assert [(c.name, c.arguments, c.error is None) for c in calls] == [
        ("Calculator", {"expression": "1+1"}, True),
        ("GoogleSearch", {"query": "x", "k": 3}, False),
        ("Calculator", {"nope": 1}, False),
    ]
    assert ts.take() == []


def test_runs_with_our_own_tool_names_map_onto_gta_names() -> None:
    from t3edge.eval.gta_tools import own_tool_calls

    assert [c.name for c in own_tool_calls(["ocr", "visualizer", "segmentation", "objectlocation"])] == [
        "OCR", "ImageDescription", "TextToBbox"]


def test_vision_tools_ask_the_loaded_model(tmp_path: Path) -> None:
    from t3edge.backends.replay import ReplayBackend

    image = tmp_path / "in.png"
    Image.new("RGB", (200, 100), (255, 255, 255)).save(image)
    backend = ReplayBackend([
        "(100,200),(500,600)",  # TextToBbox: grounding in 0-1000 coordinates
        "(0,0),(100,100) (500,500),(600,600)",  # CountGivenObject: two boxes
        "blue",  # RegionAttributeDescription, asked about the cropped region
    ])
    ts = gta_tools().with_context(ToolContext(workspace=tmp_path / "ws", backend=backend, allowed_files=[image]))
    assert ts.call("TextToBbox", kwargs={"image": str(image), "text": "cat"}) == "(20, 20, 100, 60)"
    assert ts.call("CountGivenObject", kwargs={"image": str(image), "text": "dog"}) == 2
    assert ts.call("RegionAttributeDescription",
                   kwargs={"image": str(image), "bbox": "(10, 10, 60, 40)", "attribute": "color"}) == "blue"
    region = backend.seen[2][0].images[0].image
    assert Image.open(region).size == (50, 30)  # the model saw only the region
