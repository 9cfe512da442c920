"""The tools on real inputs made here: OCR on rendered text, faces in a real photo, documents
generated in each format, image edits checked pixel by pixel; plus the registry and arguments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageColor, ImageDraw, ImageFont

from t3edge.agent.prompt import system_prompt
from t3edge.backends.replay import ReplayBackend
from t3edge.tools import ToolContext, ToolError, default_tools, tool
from t3edge.tools.image_ops import apply_instruction
from t3edge.tools.vision import parse_boxes


@pytest.fixture()
def ctx(tmp_path: Path) -> ToolContext:
    return ToolContext(workspace=tmp_path / "ws")


TOOLS = default_tools()


def test_registry_is_introspectable_and_rendered_into_the_prompt() -> None:
    described = {d["name"]: d for d in TOOLS.describe()}
    assert set(described) == {"visualizer", "inspect_file_as_text", "objectlocation", "facedetection",
                              "ocr", "image_edit", "ask_search_agent", "segmentation", "image_generator"}
    assert described["inspect_file_as_text"]["inputs"]["question"] == {
        "type": "str | None", "description": "optional question to answer from the document",
        "required": False}
    assert described["ocr"]["output_type"] == "list[str]"
    prompt = system_prompt(TOOLS, ["numpy", "PIL"])
    for t in TOOLS:
        assert t.signature() in prompt
    assert "You can import these modules: numpy, PIL." in prompt and "<end_action>" in prompt


def test_tool_decorator_derives_the_schema() -> None:
    @tool
    def scale(ctx: ToolContext, value: float, times: int = 2) -> float:
        """Multiply a number.

        Args:
            value: the number
            times: how many times
        """
        return value * times

    assert scale.signature() == "scale(value: float, times: int = 2) -> float"
    assert [i.description for i in scale.inputs] == ["the number", "how many times"]
    with pytest.raises(TypeError, match="ToolContext"):
        tool(lambda value: value)


@pytest.mark.parametrize("args, kwargs, message", [
    ((), {}, "missing the argument 'image_path'"),
    ((), {"image_path": 3}, "should be str"),
    ((), {"image_path": "a.png", "zoom": 2}, "has no argument 'zoom'"),
    (("a.png", "b.png"), {}, "at most 1 arguments"),
    ((), {"image_path": "/etc/passwd"}, "outside the working folder"),
    ((), {"image_path": "missing.png"}, "not found"),
])
def test_bad_arguments_are_tool_errors(ctx: ToolContext, args, kwargs, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        TOOLS.call("facedetection", args, kwargs, ctx=ctx)


def test_corrupt_image_and_unknown_tool_are_tool_errors(ctx: ToolContext) -> None:
    (ctx.workspace / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(ToolError, match="cannot read image"):
        TOOLS.call("ocr", [], {"image_path": "broken.png"}, ctx=ctx)
    with pytest.raises(ToolError, match="no tool named"):
        TOOLS.call("teleport", [], {}, ctx=ctx)


@pytest.mark.slow
def test_ocr_reads_rendered_text(ctx: ToolContext) -> None:
    img = Image.new("RGB", (640, 200), "white")
    draw = ImageDraw.Draw(img)
    draw.text((30, 30), "INVOICE 2024", fill="black", font=ImageFont.load_default(size=56))
    draw.text((30, 120), "TOTAL 7.75", fill="black", font=ImageFont.load_default(size=48))
    img.save(ctx.workspace / "text.png")
    lines = TOOLS.call("ocr", [], {"image_path": "text.png"}, ctx=ctx)
    joined = " ".join(lines).replace(" ", "").upper()
    assert "INVOICE2024" in joined and "TOTAL7.75" in joined
    assert joined.index("INVOICE") < joined.index("TOTAL")


def test_facedetection_finds_the_astronaut(ctx: ToolContext) -> None:
    data = pytest.importorskip("skimage.data")
    Image.fromarray(data.astronaut()).save(ctx.workspace / "astronaut.png")
    boxes = TOOLS.call("facedetection", [], {"image_path": "astronaut.png"}, ctx=ctx)
    assert len(boxes) >= 1
    # her face is around (215, 95) in the 512x512 photo
    assert any(x1 < 215 < x2 and y1 < 95 < y2 for x1, y1, x2, y2 in boxes)
    Image.new("RGB", (200, 200), "gray").save(ctx.workspace / "blank.png")
    assert TOOLS.call("facedetection", [], {"image_path": "blank.png"}, ctx=ctx) == []


def _documents(folder: Path) -> dict[str, Path]:
    from docx import Document
    from openpyxl import Workbook
    from reportlab.pdfgen import canvas

    pdf = folder / "report.pdf"
    c = canvas.Canvas(str(pdf))
    c.drawString(72, 720, "Quarterly revenue was 4200 dollars")
    c.save()
    docx = folder / "memo.docx"
    d = Document()
    d.add_heading("Memo", 1)
    d.add_paragraph("The meeting moved to Thursday")
    d.save(docx)
    xlsx = folder / "sheet.xlsx"
    wb = Workbook()
    wb.active.append(["fruit", "count"])
    wb.active.append(["mango", 17])
    wb.save(xlsx)
    csv = folder / "prices.csv"
    csv.write_text("item,price\nkiwi,3.5\n")
    return {"pdf": pdf, "docx": docx, "xlsx": xlsx, "csv": csv}


@pytest.mark.slow
def test_inspect_file_as_text_reads_each_format(ctx: ToolContext) -> None:
    docs = _documents(ctx.workspace)
    expect = {"pdf": ["Quarterly revenue was 4200 dollars"], "docx": ["Memo", "The meeting moved to Thursday"],
              "xlsx": ["mango", "17"], "csv": ["kiwi", "3.5"]}
    for kind, path in docs.items():
        text = TOOLS.call("inspect_file_as_text", [], {"file_path": path.name}, ctx=ctx)
        for phrase in expect[kind]:
            assert phrase in text, (kind, text)


def test_a_question_about_a_file_goes_to_the_model_with_its_text(ctx: ToolContext) -> None:
    (ctx.workspace / "notes.txt").write_text("The launch code is 31337.")
    backend = ReplayBackend(["It is 31337."])
    ctx.backend = backend
    answer = TOOLS.call("inspect_file_as_text", [], {"file_path": "notes.txt", "question": "Which code?"}, ctx=ctx)
    assert answer == "It is 31337."
    prompt = backend.seen[0][-1].text
    assert "The launch code is 31337." in prompt and "Which code?" in prompt
    ctx.backend = None
    with pytest.raises(ToolError, match="needs a loaded model"):
        TOOLS.call("visualizer", [], {"question": "what?", "image_path": "notes.txt"}, ctx=ctx)


def _checker_image() -> Image.Image:
    """White left half, blue right half, 100x60."""
    img = Image.new("RGB", (100, 60), (255, 255, 255))
    img.paste((0, 0, 255), (50, 0, 100, 60))
    return img


def _checker(path: Path) -> Path:
    _checker_image().save(path)
    return path


def test_image_edit_crops_and_draws_pixel_exact(ctx: ToolContext) -> None:
    _checker(ctx.workspace / "two.png")
    out = TOOLS.call("image_edit", [], {"prompt": "crop 40,10,90,50", "image_path": "two.png"}, ctx=ctx)
    with Image.open(out) as img:
        assert img.size == (50, 40)
        assert img.getpixel((5, 5)) == (255, 255, 255) and img.getpixel((15, 5)) == (0, 0, 255)
    assert out in ctx.produced and Path(out).parent == ctx.workspace
    boxed = TOOLS.call("image_edit", [], {"prompt": "draw box 10,10,30,40 green", "image_path": "two.png"}, ctx=ctx)
    with Image.open(boxed) as img:
        green = ImageColor.getrgb("green")
        assert img.getpixel((10, 10)) == green and img.getpixel((30, 25)) == green
        assert img.getpixel((20, 25)) == (255, 255, 255)  # inside the box is untouched
        assert img.getpixel((5, 5)) == (255, 255, 255)


def test_image_edit_other_operations() -> None:
    img = _checker_image()
    assert apply_instruction(img, "resize 50x30")[0].size == (50, 30)
    assert apply_instruction(img, "resize 50%")[0].size == (50, 30)
    assert apply_instruction(img, "rotate 90")[0].size == (60, 100)
    flipped = apply_instruction(img, "flip horizontal")[0]
    assert flipped.getpixel((0, 0)) == (0, 0, 255)
    gray = apply_instruction(img, "grayscale")[0]
    r, g, b = gray.getpixel((75, 30))
    assert r == g == b
    dark = apply_instruction(img, "brightness 0.5")[0]
    assert dark.getpixel((10, 10))[0] in (127, 128)
    blurred = apply_instruction(img, "blur 5")[0]
    assert blurred.getpixel((50, 30)) not in ((255, 255, 255), (0, 0, 255))
    texted, done = apply_instruction(img, 'add text "HI" at 5,5 red; crop 0,0,50,60')
    assert done == ["text", "crop"] and texted.size == (50, 60)
    assert np.asarray(texted)[..., 1].min() < 200  # red text darkened the green channel somewhere
    with pytest.raises(ToolError, match="does not know how to"):
        apply_instruction(img, "make it look like van gogh")
    with pytest.raises(ToolError, match="needs a box"):
        apply_instruction(img, "crop the left half")


def test_grounding_output_becomes_pixel_boxes(ctx: ToolContext) -> None:
    assert parse_boxes("<|object_ref_start|>dog<|object_ref_end|><|box_start|>(100,200),(500,800)<|box_end|>",
                       1000, 500) == [[100, 100, 500, 400]]
    assert parse_boxes("dog(500,800),(100,200) and (0,0),(2000,10)", 200, 100) == [[20, 20, 100, 80], [0, 0, 200, 1]]
    assert parse_boxes("no boxes here", 10, 10) == []
    _checker(ctx.workspace / "two.png")
    ctx.backend = ReplayBackend(["<|box_start|>(500,0),(1000,1000)<|box_end|>"])
    assert TOOLS.call("objectlocation", [], {"object": "blue half", "image_path": "two.png"}, ctx=ctx) == [[50, 0, 100, 60]]


def test_segmentation_cuts_out_the_located_object(ctx: ToolContext) -> None:
    img = Image.new("RGB", (120, 120), (30, 160, 30))
    ImageDraw.Draw(img).ellipse((40, 40, 80, 80), fill=(220, 20, 20))
    img.save(ctx.workspace / "ball.png")
    ctx.backend = ReplayBackend(["(250,250),(750,750)"])
    mask_path = TOOLS.call("segmentation", [], {"image_path": "ball.png", "prompt": "red ball"}, ctx=ctx)
    with Image.open(mask_path) as mask:
        assert mask.mode == "L" and mask.size == (120, 120)
        assert mask.getpixel((60, 60)) == 255 and mask.getpixel((5, 5)) == 0 and mask.getpixel((33, 33)) == 0


def test_offline_and_missing_extras_answer_clearly(ctx: ToolContext) -> None:
    said = TOOLS.call("ask_search_agent", [], {"query": "weather in Paris"}, ctx=ctx)
    assert "offline" in said and "weather in Paris" in said
    with pytest.raises(ToolError, match="image generation|text-to-image"):
        TOOLS.call("image_generator", [], {"prompt": "a cat"}, ctx=ctx)
