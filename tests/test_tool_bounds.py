"""Tool calls are bounded like code (docs/agent.md, "The sandbox"): image tools cap the pixels they
decode, document tools the pages and unpacked size they read, and every call its wall time."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import threading
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from PIL import Image

from t3edge.agent import Agent, AgentConfig
from t3edge.agent.executor import Sandbox
from t3edge.backends.base import GenerationConfig, Message, StreamItem
from t3edge.backends.replay import ReplayBackend
from t3edge.errors import BadInput
from t3edge.images import MAX_DECODE_PIXELS, load_image_within
from t3edge.protocol import format_step
from t3edge.tools import ToolContext, ToolError, ToolSet, default_tools, tool
from t3edge.tools.files import MAX_MEMBERS, MAX_NESTING, MAX_PAGES, file_text
from t3edge.trajectory import Task

# The parent's peak RSS for the 12000x12000 OCR call (measured: 0.95-1.04 GB; 1.86 GB unbounded).
# The decoded PNG alone is 432 MB: PNG cannot be decoded at a reduced scale.
OCR_PEAK_RSS_MB = 1400

_release = threading.Event()  # lets the hanging tool's abandoned thread end after each test


@tool
def hang(ctx: ToolContext, seconds: float) -> str:
    """Wait, as a tool that never answers would.

    Args:
        seconds: how long to wait
    """
    _release.wait(seconds)
    return "woke up"


@pytest.fixture
def release() -> Iterator[None]:
    _release.clear()
    yield
    _release.set()


def _sandbox(tmp_path: Path, **config: float) -> Sandbox:
    tools = ToolSet([*default_tools(), hang]).with_context(ToolContext(workspace=tmp_path))
    return Sandbox(tools, tmp_path, config=AgentConfig(**config))


_OCR_CHILD = """
import json, sys
from pathlib import Path
from t3edge.agent import AgentConfig
from t3edge.agent.executor import Sandbox
from t3edge.tools import ToolContext, default_tools

workspace = Path(sys.argv[1])
tools = default_tools(ToolContext(workspace=workspace))
with Sandbox(tools, workspace, config=AgentConfig(step_timeout_s=120)) as sandbox:
    result = sandbox.run("print(ocr(image_path='big.png'))")
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so it would report the test process's size
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
peak_mb = peak_kb / 1024
print(json.dumps({"error": result.error, "logs": result.logs, "peak_mb": peak_mb}))
"""


def test_ocr_of_a_huge_image_is_resized_and_bounded_in_memory(tmp_path: Path) -> None:
    """The tried case: the code saves a 12000x12000 PNG and asks for its text. The tool resizes it,
    says so, and the parent (a child python here, to measure its own peak) stays bounded."""
    subprocess.run([sys.executable, "-c", "import sys; from PIL import Image; "
                    "Image.new('RGB', (12000, 12000), 'white').save(sys.argv[1])", str(tmp_path / "big.png")],
                   check=True)
    done = subprocess.run([sys.executable, "-c", _OCR_CHILD, str(tmp_path)], capture_output=True, text=True,
                          check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["error"] is None, report
    assert "[ocr: resized from 12000x12000 to 4096x4096 for OCR]" in report["logs"]
    assert report["peak_mb"] < OCR_PEAK_RSS_MB, report


def test_a_jpeg_is_decoded_at_a_reduced_scale(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (6000, 4000), "gray").save(path, quality=50)
    img, original = load_image_within(path, 1000 * 1000)
    assert original == (6000, 4000)
    assert img.width * img.height <= 1000 * 1000 and abs(img.width / img.height - 1.5) < 0.01


def _png_header(path: Path, width: int, height: int) -> None:
    """A PNG that claims a size in its header and holds no pixels (the check must not decode)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def test_an_image_above_the_hard_limit_is_refused_from_its_header(tmp_path: Path) -> None:
    side = int(MAX_DECODE_PIXELS ** 0.5) + 100
    _png_header(tmp_path / "huge.png", side, side)
    with pytest.raises(BadInput, match="Mpixel limit of the tools"):
        load_image_within(tmp_path / "huge.png", 4096 * 4096)
    _png_header(tmp_path / "bomb.png", 40000, 40000)  # past Pillow's own decompression-bomb limit
    with pytest.raises(BadInput, match="cannot read image"):
        load_image_within(tmp_path / "bomb.png", 4096 * 4096)


def test_a_hanging_tool_is_cut_at_the_step_limit_and_the_next_step_runs(tmp_path: Path, release: None) -> None:
    with _sandbox(tmp_path, step_timeout_s=2) as sandbox:
        cut = sandbox.run("hang(seconds=60)")
        assert cut.error is not None
        assert "2 s limit of a step, tool calls included (the tool hang was still running" in cut.error
        assert sandbox.run("print('next step')").logs == "next step\n"


def test_a_tool_cut_at_tool_timeout_is_an_error_the_code_handles(tmp_path: Path, release: None) -> None:
    code = ("x = 5\ntry:\n    hang(seconds=60)\nexcept Exception as exc:\n    print('caught:', exc)\nprint(x)")
    with _sandbox(tmp_path, step_timeout_s=30, tool_timeout_s=1) as sandbox:
        result = sandbox.run(code)
    assert result.error is None, result.error
    assert "caught: hang failed: hang was cut off: it ran longer than its 1 s limit" in result.logs
    assert result.logs.endswith("5\n")


def test_the_run_goes_on_after_a_hanging_tool(tmp_path: Path, release: None) -> None:
    """Through the agent loop: the model sees the cut as an error observation and answers next."""
    backend = ReplayBackend([format_step("Wait.", "hang(seconds=60)"),
                             format_step("Answer.", "final_answer('done')")])
    agent = Agent(backend, tools=ToolSet([*default_tools(), hang]),
                  config=AgentConfig(step_timeout_s=2), workspace=tmp_path / "run")
    traj = agent.run_to_end(Task(id="hang", query="wait, then answer"))
    assert traj.ended == "final_answer" and traj.final_answer == "done"
    assert "the tool hang was still running: it was cut off" in (traj.steps[0].error or "")
    assert "cut off" in str(backend.seen[1][-1].text)


class CountingReplay(ReplayBackend):
    """A scripted backend that records how many of its streams ever ran at once."""

    def __init__(self, outputs: list[str], delay_s: float) -> None:
        super().__init__(outputs, delay_s=delay_s)
        self.running = self.most_at_once = 0

    def stream(self, messages: Sequence[Message], config: GenerationConfig) -> Iterator[StreamItem]:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            yield from super().stream(messages, config)
        finally:
            self.running -= 1


def test_a_model_tool_cut_off_frees_the_model_before_the_next_step(tmp_path: Path) -> None:
    """visualizer is cut at the step limit mid-answer; it stops at its next token, so the next
    step's model call never runs while the tool's is still going."""
    code = ("from PIL import Image\nImage.new('RGB', (64, 64)).save('a.png')\n"
            "print(visualizer(question='What is it?', image_path='a.png'))")
    backend = CountingReplay([format_step("Look.", code), " ".join(["word"] * 2000),
                              format_step("Answer.", "final_answer('done')")], delay_s=0.01)
    agent = Agent(backend, config=AgentConfig(step_timeout_s=3), workspace=tmp_path / "run")
    traj = agent.run_to_end(Task(id="look", query="look, then answer"))
    assert "the tool visualizer was still running: it was cut off" in (traj.steps[0].error or "")
    assert traj.final_answer == "done" and backend.most_at_once == 1


def test_a_pdf_of_thousands_of_pages_is_read_up_to_the_page_cap(tmp_path: Path) -> None:
    from reportlab.pdfgen import canvas

    path = tmp_path / "long.pdf"
    pdf = canvas.Canvas(str(path))
    for page in range(1, 3001):
        pdf.drawString(72, 720, f"This is page number {page}.")
        pdf.showPage()
    pdf.save()
    text = file_text(ToolContext(workspace=tmp_path), "long.pdf")
    assert text.startswith(f"[read the first {MAX_PAGES} of 3000 pages]")
    assert f"page number {MAX_PAGES}." in text and f"page number {MAX_PAGES + 1}." not in text


def test_a_deeply_nested_zip_is_refused_through_the_sandbox(tmp_path: Path) -> None:
    inner = b"hello"
    name = "hello.txt"
    for level in range(MAX_NESTING + 2):
        path = tmp_path / f"level{level}.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(name, inner)
        inner, name = path.read_bytes(), f"level{level}.zip"
    (tmp_path / "deep.zip").write_bytes(inner)
    with _sandbox(tmp_path) as sandbox:
        result = sandbox.run("print(inspect_file_as_text(file_path='deep.zip'))")
    assert result.error is not None and "deep.zip is too deeply nested to read as text" in result.error


def test_a_zip_of_too_many_files_is_refused(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "many.zip", "w") as archive:
        for i in range(MAX_MEMBERS + 1):
            archive.writestr(f"f{i}.txt", "")
    with pytest.raises(ToolError, match=f"more than {MAX_MEMBERS} files inside"):
        file_text(ToolContext(workspace=tmp_path), "many.zip")
