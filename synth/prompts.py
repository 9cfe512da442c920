"""The texts the data engine sends: query writing, file description, file-making code, the two
verifiers and image captioning. The seed examples are written for t3edge; none is taken from a
benchmark, so synthesized data cannot leak GTA or GAIA items into training."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence

# name -> what it does, as the query writer should understand it (the agent's tools, docs/agent.md)
TOOLS: dict[str, str] = {
    "visualizer": "answers a question about an image",
    "inspect_file_as_text": "reads a document (pdf, docx, xlsx, pptx, csv, html, json, txt, zip) as text",
    "objectlocation": "finds an object in an image and returns its bounding boxes",
    "facedetection": "finds the faces in an image and returns their boxes",
    "ocr": "reads the text in an image",
    "segmentation": "segments what a prompt names in an image and saves a mask",
    "image_edit": "edits an image (crop, resize, rotate, draw boxes, add text, blur, colours)",
    "image_generator": "generates an image from a prompt",
    "ask_search_agent": "searches the web and reports what it found",
}

IMAGE_TYPES = ("jpg", "jpeg", "png")
GENERATED_TYPES = ("pdf", "docx", "xlsx", "csv", "pptx", "txt", "json", "html", "xml", "zip", "py", "md")
FILE_TYPES = IMAGE_TYPES + GENERATED_TYPES

SEED_EXAMPLES: list[dict[str, object]] = [
    {"query": "I photographed the nutrition label on this cereal box. How many grams of sugar "
              "would I eat in three servings?", "tools": ["ocr", "visualizer"]},
    {"query": "Here is my team's sales spreadsheet for the first quarter. Which region grew the "
              "most from January to March, and by what percentage?", "tools": ["inspect_file_as_text"]},
    {"query": "How many people in this group photo are wearing glasses? Draw a box around each "
              "of them and give me the edited picture.", "tools": ["facedetection", "visualizer", "image_edit"]},
    {"query": "This is a bridge I walked across on holiday. In what year was it opened, and how "
              "long is its main span?", "tools": ["visualizer", "ask_search_agent"]},
    {"query": "The attached PDF is last month's electricity bill. If the unit price rises by 8% "
              "and I use the same amount, what will next month's bill be?", "tools": ["inspect_file_as_text"]},
    {"query": "Find the red car in this street photo and crop the picture so that only the car "
              "is left.", "tools": ["objectlocation", "image_edit"]},
    {"query": "These slides are from a lecture on photosynthesis. Which stages does the lecture "
              "name, and on which slide is each one introduced?", "tools": ["inspect_file_as_text"]},
    {"query": "Count the apples in the fruit bowl in the first image, then use the price on the "
              "shop sign in the second image to tell me what they would cost.", "tools": ["objectlocation", "ocr"]},
    {"query": "Using the CSV of my daily runs, what was my average pace in minutes per kilometre "
              "during May?", "tools": ["inspect_file_as_text"]},
    {"query": "Turn the sky in this landscape photo into sunset colours and add the caption "
              "'Evening walk' in the bottom left corner.", "tools": ["image_edit"]},
    {"query": "Which of the two phones shown in these pictures has the bigger battery according "
              "to the makers' published specifications?", "tools": ["visualizer", "ask_search_agent"]},
    {"query": "Segment the dog in this picture and tell me roughly what share of the image it "
              "covers.", "tools": ["segmentation"]},
    {"query": "The Word document is a draft contract. List every deadline it mentions together "
              "with the party responsible for it.", "tools": ["inspect_file_as_text"]},
    {"query": "Read the handwritten recipe in this photo and scale the ingredient amounts for "
              "ten people instead of four.", "tools": ["ocr", "visualizer"]},
]


def _tool_lines() -> str:
    return "\n".join(f"- {name}: {what}" for name, what in TOOLS.items())


QUERY_SYSTEM = f"""You write tasks for a multimodal assistant that solves them by writing Python \
code that calls tools. The tools are:
{_tool_lines()}

Write natural, varied and challenging real-world queries that a person might ask about their own \
images and files. Each query must need at least one tool, should need several steps of reasoning, \
and must have a single verifiable answer. Mention the files the query is about (a photo, a \
spreadsheet, a PDF...) the way a user would, without inventing their content in the query. Vary the \
topics (daily life, work, study, travel, shopping, health, hobbies, science), the file types and \
the tools.

Reply with JSON only: {{"queries": [{{"query": "...", "tools": ["tool_name", ...]}}, ...]}}"""


def query_prompt(batch: int, n: int, examples_per_call: int) -> str:
    """The user turn of query-writing call `batch`: its own sample of seed examples."""
    rng = random.Random(batch)
    shown = rng.sample(SEED_EXAMPLES, min(examples_per_call, len(SEED_EXAMPLES)))
    examples = "\n".join(json.dumps(e, ensure_ascii=False) for e in shown)
    return (f"Here are some examples of the style (do not copy them):\n{examples}\n\n"
            f"Now write {n} new queries (batch {batch}), each different from the examples and "
            f"from each other.")


FILE_CONTENT_SYSTEM = f"""You prepare the files for a task given to a multimodal assistant. For \
the query, split the information needed to answer it into what comes from the internet and what \
must come from files the user provides. Then describe each file: its type and exactly what it \
contains, in enough detail (names, numbers, dates, what an image shows) that the file can be \
made or found and the query answered from it. Images are photographs or pictures found in a \
collection, so describe what they show; documents are made for the task, so give their full \
content. File types: {", ".join(FILE_TYPES)}.

Reply with JSON only:
{{"information_from_internet": "...", "information_from_files": "...", "file_numbers": N,
 "file_information": {{"file_1": {{"file_type": "jpg", "file_content": "..."}}, ...}}}}"""


def file_content_prompt(query: str, tools: Sequence[str], max_files: int) -> str:
    return (f"Query: {query}\nTools the query expects: {', '.join(tools) or 'any'}\n"
            f"Use at most {max_files} files.")


FILE_CODE_SYSTEM = """You write one Python script that creates a file for a task. The script \
must write the file to the path given, with exactly the content described, using only the standard \
library, pandas, numpy, openpyxl, python-docx (import docx), python-pptx (import pptx) or \
matplotlib (for a pdf: matplotlib.backends.backend_pdf.PdfPages, with the text placed by \
fig.text). It must not read other files, use the network, or print anything long.

Reply with the script in one ```python code block and nothing else."""


def file_code_prompt(file_type: str, path: str, content: str) -> str:
    return (f"File type: {file_type}\nWrite it to: {path}\nContent:\n{content}")


VERIFY_QUERY_SYSTEM = """You check a task before an assistant tries to solve it. You get the query \
and its files (images as pictures, other files as their text). Decide whether the query is \
natural and answerable: the files must contain the information the query relies on, the rest \
must be findable on the web or computable, and the query must not contradict the files.

Reply with JSON only:
{"information_for_query": "...", "useful_information_in_files": "...",
 "missed_information_in_files": "...", "missed_information_web_search": "...",
 "missed_information_computed": "...", "thought": "...", "correct": "yes" or "no",
 "updated_query": "the query reworded to fit the files, or an empty string"}"""


VERIFY_TRAJ_SYSTEM = """You check how an assistant solved a task by writing Python that calls \
tools. You get the query, its files (images as pictures), every step (thought, code, what it \
printed) and the final answer. Answer "no" when the tools do not fit the task or no tool was \
used, when tool arguments are unreasonable, when an intermediate or final answer is wrong, or \
when the steps contradict the files. Otherwise answer "yes".

Reply with JSON only: {"thought": "...", "correct": "yes" or "no"}"""


CAPTION_PROMPT = ("Describe this image in one or two sentences: the main objects, any readable "
                  "text, the setting and the kind of picture (photo, chart, painting, screenshot).")
