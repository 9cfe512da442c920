"""The system prompt: the Thought/Code/Observation cycle, the tools with their argument types, the
imports code may use, worked examples, and the rules (docs/agent.md, "The protocol").

Two styles: `full` (three worked examples, every argument described) and `compact` for small
contexts (one example, one line a tool, the rules that small models break most), about a third
of the tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

from t3edge.protocol import format_step, observation_message, task_message
from t3edge.tools.base import Tool, ToolSet

INTRO = """You are an expert assistant who solves tasks about images and files by writing Python code.
You work in a cycle of steps. In each step you write:
Thought: what you will do next and why.
Code: one Python block that starts with ```py and ends with ```<end_action>.
The code runs, and what it prints comes back to you as the Observation of that step. Use it in the next step.
To finish, call final_answer(answer) in a code block; the answer can be text, a number, a list or a dict."""

RULES = """Rules:
1. Always write 'Thought:' and then 'Code:' with a ```py block ending in ```<end_action>, or you will fail.
2. print() the values you need; only printed text comes back to you.
3. Don't chain tool calls whose inputs depend on each other in one block: print the first result and use it in the next step.
4. Call a tool with keyword arguments, e.g. ocr(image_path="a.jpg"). Never repeat an identical call.
5. Only import the modules listed above. Variables you define stay available in later steps.
6. Save intermediate files in the working folder (plain file names like "crop.png") and pass their paths to tools.
7. Files: only the attachments and the working folder can be read; there is no network unless a tool offers it.
8. Call final_answer(...) once you know the answer."""


def _examples() -> list[tuple[str, list[tuple[str, str, str]]]]:
    return [
        ("How much is the total on this receipt, in dollars?", [
            ("I will read the text of the receipt with ocr.",
             'lines = ocr(image_path="receipt.jpg")\nprint(lines)',
             "['CAFE ROMA', 'Latte 4.50', 'Bagel 3.25', 'TOTAL 7.75']"),
            ("The receipt says TOTAL 7.75. I will give that as the answer.",
             "final_answer(7.75)", ""),
        ]),
        ("Crop the dog out of the photo and tell me its colour.", [
            ("First I locate the dog.",
             'boxes = objectlocation(object="dog", image_path="park.png")\nprint(boxes)',
             "[[120, 80, 340, 300]]"),
            ("I crop the box, then ask about the crop in the next step.",
             'crop = image_edit(prompt="crop 120,80,340,300", image_path="park.png")\nprint(crop)',
             "park_crop.png"),
            ("Now I ask the vision model about the cropped image.",
             'colour = visualizer(question="What colour is the dog?", image_path="park_crop.png")\nprint(colour)',
             "The dog is light brown."),
            ("I have the answer.",
             'final_answer({"image": "park_crop.png", "colour": "light brown"})', ""),
        ]),
        ("What is the average of the 'price' column in prices.csv?", [
            ("I read the table with pandas and compute the mean.",
             'import pandas as pd\ndf = pd.read_csv("prices.csv")\nprint(df["price"].mean())',
             "12.5"),
            ("The mean price is 12.5.", "final_answer(12.5)", ""),
        ]),
    ]


def render_tool(t: Tool) -> str:
    lines = [f"- {t.signature()}", f"    {t.description}"]
    lines += [f"    {i.name} ({i.type}): {i.description}" for i in t.inputs if i.description]
    return "\n".join(lines)


COMPACT_INTRO = """You solve tasks about files and images by writing Python code, one step at a time.
Each step is exactly:
Thought: one sentence.
Code:
```py
<python>
```<end_action>
What the code prints comes back as the Observation. Finish with final_answer(answer) in a code block."""

COMPACT_RULES = """Rules: print() what you need to see; never repeat code you already ran; use the tools with keyword arguments; only import the modules above; call final_answer(...) as soon as you know the answer."""


def render_examples(limit: int | None = None, vision: bool = True) -> str:
    """The worked examples (without the one that looks at images when not `vision`); `limit`
    keeps the first ones, the file task first, the commonest kind."""
    receipt, crop, table = _examples()
    examples = [receipt, crop, table] if vision else [receipt, table]
    if limit is not None:
        examples = [table, *[e for e in examples if e is not table]][:limit]
    blocks = []
    for query, steps in examples:
        parts = [task_message(query)]
        for index, (thought, code, observation) in enumerate(steps):
            parts.append(format_step(thought, code))
            if observation:
                parts.append(observation_message(index, observation))
        blocks.append("\n".join(parts))
    return "\n\n---\n".join(blocks)


def render_tool_compact(t: Tool) -> str:
    return f"- {t.signature()}: {t.description.split('. ')[0].rstrip('.')}."


def system_prompt(tools: ToolSet, allowed_imports: Sequence[str], style: str = "full",
                  vision: bool = True) -> str:
    """The system prompt in `style` (`full` or `compact`). Without `vision` (a text-only model) it
    leaves out the tools and the example that need to see images."""
    shown = [t for t in tools if vision or not t.needs_vision]
    if style == "compact":
        return "\n\n".join([
            COMPACT_INTRO,
            "Example:\n" + render_examples(limit=1),
            "Tools (Python functions):\n" + "\n".join(render_tool_compact(t) for t in shown)
            + "\n- final_answer(answer): give the answer and stop.",
            "Modules you may import: " + ", ".join(allowed_imports) + ".",
            COMPACT_RULES,
            "Now begin!",
        ])
    tool_docs = "\n".join(render_tool(t) for t in shown)
    return "\n\n".join([
        INTRO,
        "Here are examples:\n---\n" + render_examples(vision=vision) + "\n---",
        "You can call these tools as Python functions (plus final_answer(answer)):\n" + tool_docs,
        "You can import these modules: " + ", ".join(allowed_imports) + ".",
        RULES,
        "Now begin!",
    ])
