"""Small invented datasets in GTA's and GAIA's formats (no benchmark data is ever used)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image


def _image(path: Path, color: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (56, 56), color).save(path)


def _call(name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": name, "arguments": args}}],
            "thought": f"use {name}"}


def _item(query: str, image: str | None, calls: list[tuple[str, dict[str, Any]]], answer: Any,
          final: str = "done") -> dict[str, Any]:
    dialogs: list[dict[str, Any]] = [{"role": "user", "content": query}]
    for name, args in calls:
        dialogs += [_call(name, args), {"role": "tool", "name": name, "content": {"type": "text", "content": "ok"}}]
    dialogs.append({"role": "assistant", "content": final})
    return {
        "tools": [{"name": n} for n in dict.fromkeys(n for n, _ in calls)],
        "files": [{"type": "image", "path": image, "url": None}] if image else [],
        "dialogs": dialogs, "gt_answer": answer,
    }


GTA_ITEMS: dict[str, dict[str, Any]] = {
    "0": _item("How many apples are on the table?", "image/apples.jpg",
               [("OCR", {"image": "image/apples.jpg"}), ("Calculator", {"expression": "2+2"})],
               {"whitelist": [["4", "four"]], "blacklist": None}),
    "1": _item("What color is the car?", "image/car.jpg", [("ImageDescription", {"image": "image/car.jpg"})],
               {"whitelist": [["red"]], "blacklist": [["dark red"], ["maroon"]]}),
    "2": _item("Describe the scene.", "image/car.jpg", [("ImageDescription", {"image": "image/car.jpg"})],
               ["A red car parked on a street", "A car on the road"]),
    "3": _item("Draw a box around the cat.", "image/cat.jpg",
               [("TextToBbox", {"image": "image/cat.jpg", "text": "cat"}),
                ("DrawBox", {"image": "image/cat.jpg", "bbox": "(1, 2, 30, 40)", "annotation": "cat"})],
               None),
    "4": _item("What share of the budget is rent?", "image/apples.jpg", [("OCR", {"image": "image/apples.jpg"})],
               {"whitelist": [["25%"]], "blacklist": None}),
    "5": _item("What is the price in dollars?", None, [("GoogleSearch", {"query": "price", "k": 3})],
               {"whitelist": [["5"], ["dollars", "USD"]], "blacklist": None}),
}

TOOLMETA = {name: {"name": name, "description": f"the {name} tool", "inputs": [], "outputs": []}
            for name in ("OCR", "Calculator", "ImageDescription", "TextToBbox", "DrawBox", "GoogleSearch")}


def make_gta(root: Path, items: dict[str, dict[str, Any]] | None = None) -> Path:
    """A GTA-format folder: dataset.json, toolmeta.json and image/*.jpg."""
    root.mkdir(parents=True, exist_ok=True)
    for name, color in (("apples", (200, 30, 30)), ("car", (180, 0, 0)), ("cat", (90, 90, 90))):
        _image(root / "image" / f"{name}.jpg", color)
    (root / "dataset.json").write_text(json.dumps(items or GTA_ITEMS), encoding="utf-8")
    (root / "toolmeta.json").write_text(json.dumps(TOOLMETA), encoding="utf-8")
    return root


GAIA_ROWS: list[dict[str, Any]] = [
    {"task_id": "t-num", "Question": "How many legs do 3 spiders have?", "Level": 1, "Final answer": "24",
     "file_name": "", "Annotator Metadata": {"Steps": "8*3", "Tools": "none"}},
    {"task_id": "t-list", "Question": "List the primary colors of light.", "Level": 1,
     "Final answer": "red, green, blue", "file_name": "", "Annotator Metadata": {}},
    {"task_id": "t-str", "Question": "Which bird is in the photo?", "Level": 2, "Final answer": "Sea gull",
     "file_name": "bird.png", "Annotator Metadata": {}},
    {"task_id": "t-money", "Question": "What does the sheet total?", "Level": 2, "Final answer": "1000",
     "file_name": "sheet.csv", "Annotator Metadata": {}},
    {"task_id": "t-hard", "Question": "Name the author.", "Level": 3, "Final answer": "Ada Lovelace",
     "file_name": "", "Annotator Metadata": {}},
]


def make_gaia(root: Path, *, parquet: bool = False, rows: list[dict[str, Any]] | None = None) -> Path:
    """A GAIA-format folder: metadata.jsonl (or .parquet) with an image and a csv attached."""
    root.mkdir(parents=True, exist_ok=True)
    rows = rows if rows is not None else GAIA_ROWS
    _image(root / "bird.png", (250, 250, 250))
    (root / "sheet.csv").write_text("item,amount\na,600\nb,400\n", encoding="utf-8")
    if parquet:
        import pandas as pd

        frame = pd.DataFrame([{**r, "Annotator Metadata": json.dumps(r["Annotator Metadata"])} for r in rows])
        frame.to_parquet(root / "metadata.parquet")
    else:
        with open(root / "metadata.jsonl", "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
    return root
