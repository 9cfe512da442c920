"""A deterministic scripted "API model" for the data-engine tests: it answers every stage of the
pipeline over real HTTP (t3edge.scripted_server) and injects 429s, 500s, hangs and malformed
bodies on first attempts. Outcomes are chosen per query, so the expected result is known:

    cat photo          -> kept (visualizer)                    [429 on file_content, hang on step 1]
    grocery csv        -> kept (inspect_file_as_text)          [500 on verify_query, bad body on verify_traj]
    cat photo (again)  -> dropped at queries: near_duplicate
    voice memo         -> dropped at file_content: unsupported_file_type
    receipt photo      -> dropped at verify_query: query_file_rejected
    rainfall chart     -> dropped at file_content: malformed_json
    sales pdf          -> dropped at filter: trajectory_rejected
    packing docx       -> dropped at trajectories: no_final_answer (never answers)
    budget memo        -> dropped at file_content: api_error (always 500; transient)
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from pathlib import Path
from typing import Any

from synth.items import item_id
from synth.prompts import (
    FILE_CODE_SYSTEM,
    FILE_CONTENT_SYSTEM,
    QUERY_SYSTEM,
    VERIFY_QUERY_SYSTEM,
    VERIFY_TRAJ_SYSTEM,
)
from t3edge.scripted_server import Fault
from tinymodels import make_test_image

CAPTIONS = {
    "cat.png": "a ginger cat sleeping on a red sofa in a living room",
    "receipt.png": "a paper shop receipt listing groceries with prices and a total",
    "chart.png": "a bar chart of monthly rainfall in millimetres for one city",
}

QUERIES = [
    ("cat", "Looking at the photo of my ginger cat asleep on the sofa, what colour is the sofa?", ["visualizer"]),
    ("grocery", "Using my grocery spreadsheet for this week, how much did I spend on fruit in total?", ["inspect_file_as_text"]),
    ("cat_dup", "Looking at the photo of my ginger cat asleep on the sofa, what colour is the sofa exactly?", ["visualizer"]),
    ("voice", "Which song is playing in the voice memo I recorded at the concert?", ["ask_search_agent"]),
    ("receipt", "From the photo of my shop receipt, which item was the most expensive one?", ["ocr"]),
    ("chart", "In the rainfall chart I attached, which month was the wettest of the year?", ["visualizer"]),
    ("sales", "According to the sales report PDF, which product sold the most units in March?", ["inspect_file_as_text"]),
    ("packing", "Check my packing list document and tell me what I forgot for a beach holiday.", ["inspect_file_as_text"]),
    ("memo", "Summarise the budget memo and tell me by how much the travel budget was cut.", ["inspect_file_as_text"]),
]
KEPT = {"cat", "grocery"}
DROPPED = {  # name -> (stage, reason)
    "cat_dup": ("queries", "near_duplicate"),
    "voice": ("file_content", "unsupported_file_type"),
    "receipt": ("verify_query", "query_file_rejected"),
    "chart": ("file_content", "malformed_json"),
    "sales": ("filter", "trajectory_rejected"),
    "packing": ("trajectories", "no_final_answer"),
    "memo": ("file_content", "api_error"),
}
FILES = {  # name -> (file_type, description)
    "cat": ("jpg", "a photo of a ginger cat sleeping on a red sofa"),
    "grocery": ("csv", "a CSV with columns item,category,price: apples,fruit,3.20; bread,bakery,2.10; pears,fruit,4.00"),
    "voice": ("mp3", "a voice memo recorded at a concert"),
    "receipt": ("jpg", "a photo of a shop receipt with groceries, prices and a total"),
    "sales": ("pdf", "a one-page sales report for March: widgets 120 units, gadgets 95 units"),
    "packing": ("docx", "a packing list: passport, charger, sunglasses, swimsuit"),
}
FILE_CODE = {
    "csv": 'with open("{target}", "w") as fh:\n    fh.write("item,category,price\\napples,fruit,3.20\\nbread,bakery,2.10\\npears,fruit,4.00\\n")',
    "pdf": ('from matplotlib.backends.backend_pdf import PdfPages\nimport matplotlib.pyplot as plt\n'
            'with PdfPages("{target}") as pdf:\n    fig = plt.figure()\n'
            '    fig.text(0.1, 0.9, "March sales: widgets 120 units, gadgets 95 units")\n    pdf.savefig(fig)'),
    "docx": 'import docx\nd = docx.Document()\nfor line in ["passport", "charger", "sunglasses", "swimsuit"]:\n    d.add_paragraph(line)\nd.save("{target}")',
}


def make_pool(folder: Path) -> Path:
    """Three small images and a captions file naming them."""
    folder.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate(CAPTIONS):
        make_test_image(folder / name, (56, 56), seed=seed)
    with open(folder / "captions.jsonl", "w") as fh:
        for name, caption in CAPTIONS.items():
            fh.write(json.dumps({"image": name, "caption": caption}) + "\n")
    return folder


def ids() -> dict[str, str]:
    """name -> item id."""
    return {name: item_id(query) for name, query, _ in QUERIES}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if p.get("type") == "text")


def _name_for(text: str) -> str | None:
    for name, query, _ in QUERIES:
        if query in text:
            return name
    for name, (_, description) in FILES.items():
        if description in text:
            return name
    return None


def stage_of(request: dict[str, Any]) -> str:
    messages = request["messages"]
    system = _text(messages[0]["content"]) if messages[0]["role"] == "system" else ""
    for stage, prompt in (("queries", QUERY_SYSTEM), ("file_content", FILE_CONTENT_SYSTEM),
                          ("files", FILE_CODE_SYSTEM), ("verify_query", VERIFY_QUERY_SYSTEM),
                          ("verify_traj", VERIFY_TRAJ_SYSTEM)):
        if system == prompt:
            return stage
    return "trajectories" if system else "tool"


class World:
    """The responder: call it with a request; `calls` logs (stage, item name) per request."""

    def __init__(self, *, faults: bool = True) -> None:
        """`faults=False` keeps only the item designed to fail for good (the budget memo)."""
        self.faults = faults
        self.calls: list[tuple[str, str | None]] = []
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> str | Fault:
        stage = stage_of(request)
        user = "\n".join(_text(m["content"]) for m in request["messages"] if m["role"] == "user")
        name = _name_for(user)
        key = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
        with self._lock:
            self.calls.append((stage, name))
            attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
        fault = self._fault(stage, name, attempt, request)
        return fault if fault is not None else self._reply(stage, name, request, user)

    def _fault(self, stage: str, name: str | None, attempt: int, request: dict[str, Any]) -> Fault | None:
        if stage == "file_content" and name == "memo":
            return Fault(status=500)
        if not self.faults:
            return None
        if attempt > 1:
            return None
        steps = sum(1 for m in request["messages"] if m["role"] == "assistant")
        if stage == "file_content" and name == "cat":
            return Fault(status=429)
        if stage == "trajectories" and name == "cat" and steps == 0:
            return Fault(hang_s=2.0)
        if stage == "verify_query" and name == "grocery":
            return Fault(status=500)
        if stage == "verify_traj" and name == "grocery":
            return Fault(body='{"choices": [')
        return None

    def _reply(self, stage: str, name: str | None, request: dict[str, Any], user: str) -> str:
        if stage == "queries":
            drafts = [{"query": q, "tools": t} for _, q, t in QUERIES]
            # a fenced reply with a trailing comma: repaired, not rejected
            return "```json\n" + json.dumps({"queries": drafts})[:-2] + "],}\n```"
        if stage == "file_content":
            if name == "chart":
                return "Sure! Here are the files: {file_1: jpg"
            if name == "packing":
                files = {"file_1": {"file_type": "docx", "file_content": FILES["packing"][1]}}
            else:
                file_type, description = FILES[name]
                files = {"file_1": {"file_type": file_type, "file_content": description}}
            return json.dumps({"information_from_internet": "", "information_from_files": "all",
                               "file_numbers": 1, "file_information": files})
        if stage == "files":
            file_type = re.search(r"File type: (\w+)", user).group(1)
            target = re.search(r"Write it to: (\S+)", user).group(1)
            return "```python\n" + FILE_CODE[file_type].format(target=target) + "\n```"
        if stage == "verify_query":
            correct = "no" if name == "receipt" else "yes"
            return json.dumps({"information_for_query": "x", "useful_information_in_files": "x",
                               "missed_information_in_files": "", "missed_information_web_search": "",
                               "missed_information_computed": "", "thought": f"checked {name}",
                               "correct": correct, "updated_query": ""})
        if stage == "verify_traj":
            correct = "no" if name == "sales" else "yes"
            return json.dumps({"thought": f"steps of {name} checked", "correct": correct})
        if stage == "tool":
            return "The sofa is red."
        return self._agent_step(name, request, user)

    @staticmethod
    def _agent_step(name: str | None, request: dict[str, Any], user: str) -> str:
        steps = sum(1 for m in request["messages"] if m["role"] == "assistant")
        path = re.search(r"Attachment: (\S+)", user).group(1)
        if name == "packing":
            return 'Thought: Let me look around.\nCode:\n```py\nprint("still looking")\n```<end_action>'
        if steps == 0:
            call = (f'visualizer(question="What colour is the sofa?", image_path="{path}")'
                    if name == "cat" else f'inspect_file_as_text(file_path="{path}")')
            return f"Thought: I need to look at the file.\nCode:\n```py\nprint({call})\n```<end_action>"
        answer = {"cat": "red", "grocery": "7.20", "sales": "gadgets"}[name]
        return f'Thought: I have the answer.\nCode:\n```py\nfinal_answer("{answer}")\n```<end_action>'


def write_config(path: Path, url: str, pool: Path | None, **sections: dict[str, Any]) -> Path:
    """A synth TOML for the scripted world (short timeouts and backoff, a small run); `sections`
    override single values, e.g. `queries={"calls": 2}`."""
    config: dict[str, dict[str, Any]] = {
        "api": {"base_url": url, "model": "scripted", "concurrency": 4, "timeout_s": 1.0,
                "max_retries": 3, "backoff_base_s": 0.01, "backoff_max_s": 0.05},
        "prices": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
        "queries": {"calls": 1, "per_call": 9},
        "files": {"image_pool": str(pool)} if pool is not None else {},
        "trajectories": {"max_steps": 2},
        "export": {"valid_fraction": 0.5},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    lines = []
    for name, values in config.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
    path.write_text("\n".join(lines) + "\n")
    return path
