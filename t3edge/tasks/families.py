"""The task families: each draws its values from a seeded `random.Random`, writes its files,
states the answer, and gives the reference solution an agent would write (Thought/Code steps).

A family's `verify` runs the real tools on the files it wrote (OCR, face detection, image
editing, document reading) and says what is wrong when they do not give the answer back; the
generator then redraws the task.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from t3edge.tasks import files as fw
from t3edge.tasks import vocab
from t3edge.tasks.schema import CheckSpec
from t3edge.tasks.splits import canonical, draw, price, sample, split_of, vocabulary

MONEY = CheckSpec(kind="number", tolerance=0.005)
INTEGER = CheckSpec(kind="number", tolerance=0.0)
TEXT = CheckSpec(kind="text")


class Retry(Exception):
    """This draw does not make a valid task (wrong split, ambiguous answer, tools disagree)."""


@dataclass
class Draft:
    query: str
    files: list[str]
    answer: Any
    check: CheckSpec
    tools: list[str]
    steps: list[tuple[str, str]]
    values: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # what `verify` needs to know


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    make: Callable[[random.Random, str, Path], Draft]
    verify: Callable[[Path, Draft], str | None] | None = None
    held_out: bool = False


def _num(value: Decimal | int | float) -> str:
    """A number as Python prints the float (or int) the reference code computes."""
    return str(value) if isinstance(value, int) else repr(float(value))


def _values(*groups: Any) -> list[str]:
    out: list[str] = []
    for group in groups:
        items = group if isinstance(group, (list, tuple)) else [group]
        out += [canonical(v) for v in items]
    return list(dict.fromkeys(out))


def _code(rng: random.Random, split: str, letters: int, digits: int, sep: str = "-") -> str:
    def make() -> str:
        a = "".join(rng.choice(vocab.CODE_LETTERS) for _ in range(letters))
        b = "".join(rng.choice(vocab.CODE_DIGITS) for _ in range(digits))
        return f"{a}{sep}{b}"
    return draw(rng, split, make)


def _person(rng: random.Random, split: str) -> str:
    return draw(rng, split, lambda: f"{rng.choice(vocab.FIRST_NAMES)} {rng.choice(vocab.LAST_NAMES)}")


def _distinct_prices(rng: random.Random, split: str, k: int, low: int, high: int) -> list[Decimal]:
    out: list[Decimal] = []
    while len(out) < k:
        p = price(rng, split, low, high)
        if p not in out:
            out.append(p)
    return out


def _tools(folder: Path, names: Sequence[str], workspace: Path) -> Any:
    from t3edge.tools import ToolContext, default_tools

    ctx = ToolContext(workspace=workspace, allowed_files=[folder / n for n in names])
    return default_tools(ctx)


PANDAS_CSV = 'import pandas as pd\ndf = pd.read_csv("{name}")\n'


# ---------------------------------------------------------------------------------------------
# csv_total: the total of price * quantity
# ---------------------------------------------------------------------------------------------


def make_csv_total(rng: random.Random, split: str, folder: Path) -> Draft:
    name = rng.choice(["orders.csv", "basket.csv", "groceries.csv", "shopping.csv"])
    items = sample(rng, vocab.GROCERIES, split, rng.randint(3, 5))
    prices = [price(rng, split, 25, 995) for _ in items]
    quantities = [rng.randint(1, 6) for _ in items]
    total = sum((p * q for p, q in zip(prices, quantities)), Decimal(0))
    if split_of(total) != split:
        raise Retry("total in the other split")
    fw.write_csv(folder / name, ["item", "price", "quantity"],
                 [[i, f"{p:.2f}", q] for i, p, q in zip(items, prices, quantities)])
    query = rng.choice([
        f"What is the total cost of the order in {name} (price times quantity, summed)?",
        f"{name} lists items with their price and quantity. How much do they cost altogether?",
        f"Using {name}, compute the sum of price times quantity over all rows.",
    ])
    t = _num(total)
    steps = [
        (f"I will read {name} with pandas and add up price times quantity.",
         PANDAS_CSV.format(name=name) + 'print(df)\nprint(round((df["price"] * df["quantity"]).sum(), 2))'),
        (f"The total cost is {t}.", f"final_answer({t})"),
    ]
    return Draft(query, [name], float(total), MONEY, [], steps, _values(items, prices, total))


# ---------------------------------------------------------------------------------------------
# csv_lookup: the price of an item, the cheapest / dearest item, the items above a price
# ---------------------------------------------------------------------------------------------


def make_csv_lookup(rng: random.Random, split: str, folder: Path) -> Draft:
    name = rng.choice(["prices.csv", "menu.csv", "catalog.csv", "pricelist.csv"])
    items = sample(rng, vocab.GROCERIES, split, rng.randint(3, 5))
    prices = _distinct_prices(rng, split, len(items), 100, 1500)
    fw.write_csv(folder / name, ["item", "price"], [[i, f"{p:.2f}"] for i, p in zip(items, prices)])
    head = PANDAS_CSV.format(name=name)
    variant = rng.choice(["price", "cheapest", "dearest", "above"])
    values = _values(items, prices)
    if variant == "price":
        k = rng.randrange(len(items))
        item, answer = items[k], prices[k]
        query = rng.choice([f"What is the price of {item} in {name}?",
                            f"How much do {item} cost according to {name}?"])
        t = _num(answer)
        steps = [(f"I will read {name} and look at the row for {item}.",
                  head + f'print(df[df["item"] == "{item}"])'),
                 (f"The price of {item} is {t}.", f"final_answer({t})")]
        return Draft(query, [name], float(answer), MONEY, [], steps, values)
    if variant in ("cheapest", "dearest"):
        pick = min if variant == "cheapest" else max
        item = items[prices.index(pick(prices))]
        word = "cheapest" if variant == "cheapest" else "most expensive"
        fn = "idxmin" if variant == "cheapest" else "idxmax"
        query = rng.choice([f"Which item in {name} is the {word}?",
                            f"In {name}, what is the {word} item?"])
        steps = [(f"I will read {name} and find the row with the {'lowest' if fn == 'idxmin' else 'highest'} price.",
                  head + f'print(df.loc[df["price"].{fn}(), "item"])'),
                 (f"The {word} item is {item}.", f'final_answer("{item}")')]
        return Draft(query, [name], item, TEXT, [], steps, values)
    ordered = sorted(prices)
    cut = rng.randrange(1, len(ordered))
    low, high = ordered[cut - 1], ordered[cut]
    threshold = next((Decimal(v) for v in range(int(low) + 1, int(high) + 1) if low < v < high), None)
    if threshold is None:
        raise Retry("no whole-number threshold between two prices")
    above = [i for i, p in zip(items, prices) if p > threshold]
    query = rng.choice([f"Which items in {name} cost more than {threshold}?",
                        f"List the items in {name} whose price is above {threshold}."])
    steps = [(f"I will read {name} and keep the items priced above {threshold}.",
              head + f'print(df[df["price"] > {threshold}]["item"].tolist())'),
             (f"The items above {threshold} are {', '.join(above)}.", f"final_answer({above!r})")]
    return Draft(query, [name], above, CheckSpec(kind="set"), [], steps, values)


# ---------------------------------------------------------------------------------------------
# xlsx_sum: an aggregate of a spreadsheet (pandas.read_excel)
# ---------------------------------------------------------------------------------------------


def make_xlsx_sum(rng: random.Random, split: str, folder: Path) -> Draft:
    name = rng.choice(["sales.xlsx", "revenue.xlsx", "stores.xlsx"])
    stores = sample(rng, vocab.CITIES, split, rng.randint(2, 3))
    months = list(vocab.MONTHS[: rng.randint(2, 3)])
    rows = []
    for month in months:
        for store in stores:
            if len(rows) < 6:
                rows.append([store, month, draw(rng, split, lambda: rng.randint(100, 999))])
    if len({r[0] for r in rows}) < 2:
        raise Retry("one store only")
    fw.write_xlsx(folder / name, "sales", ["store", "month", "amount"], rows)
    values = _values([r[0] for r in rows], [r[2] for r in rows])
    variant = rng.choice(["store", "all", "best"])
    totals = {s: sum(r[2] for r in rows if r[0] == s) for s in stores}
    if variant == "best":
        answer: Any = max(totals, key=lambda s: totals[s])
        if sorted(totals.values())[-1] == sorted(totals.values())[-2]:
            raise Retry("a tie")
        query = rng.choice([f"Which store has the highest total amount in {name}?",
                            f"In {name}, which store sold the most in total?"])
        pandas_code = 'print(df.groupby("store")["amount"].sum())'
        final = (f"{answer} has the highest total.", f'final_answer("{answer}")')
        return _xlsx_draft(query, name, answer, TEXT, values, pandas_code, final)
    if variant == "store":
        store = rng.choice(stores)
        picked = [r[2] for r in rows if r[0] == store]
        query = rng.choice([f"What is the total amount sold by the {store} store in {name}?",
                            f"In {name}, add up the amount column for the store {store}."])
        pandas_code = f'print(df[df["store"] == "{store}"]["amount"].sum())'
        what = f"The {store} store sold"
    else:
        picked = [r[2] for r in rows]
        query = rng.choice([f"What is the sum of the amount column in {name}?",
                            f"What is the total amount over all rows of {name}?"])
        pandas_code = 'print(df["amount"].sum())'
        what = "The amounts add up to"
    answer = sum(picked)
    if split_of(answer) != split:
        raise Retry("answer in the other split")
    final = (f"{what} {answer}.", f"final_answer({answer})")
    return _xlsx_draft(query, name, answer, INTEGER, values + _values(answer), pandas_code, final)


def _xlsx_draft(query: str, name: str, answer: Any, check: CheckSpec, values: list[str], pandas_code: str,
                final: tuple[str, str]) -> Draft:
    steps = [("I will read the spreadsheet with pandas and compute the answer.",
              f'import pandas as pd\ndf = pd.read_excel("{name}")\nprint(df)\n{pandas_code}'), final]
    return Draft(query, [name], answer, check, [], steps, values)


# ---------------------------------------------------------------------------------------------
# docx_fact / pdf_fact: one fact among several in a document (inspect_file_as_text)
# ---------------------------------------------------------------------------------------------


def _read_steps(name: str, fact: str, answer: str) -> list[tuple[str, str]]:
    literal = f'"{answer}"'
    return [(f"I will read {name} as text to find the {fact}.",
             f'text = inspect_file_as_text(file_path="{name}")\nprint(text)'),
            (f"The document says the {fact} is {answer}.", f"final_answer({literal})")]


def _verify_text(folder: Path, draft: Draft) -> str | None:
    from t3edge.tools.files import file_text

    with tempfile.TemporaryDirectory() as tmp:
        tools = _tools(folder, draft.files, Path(tmp))
        text = file_text(tools.ctx, draft.files[0])
    answer = draft.answer
    needle = str(Decimal(str(answer)).quantize(Decimal("0.01"))) if isinstance(answer, float) else str(answer)
    return None if needle in text else f"{needle!r} is not in the text read from {draft.files[0]}"


def make_docx_fact(rng: random.Random, split: str, folder: Path) -> Draft:
    name = rng.choice(["memo.docx", "notes.docx", "brief.docx"])
    lead = _person(rng, split)
    city = rng.choice(vocabulary(vocab.CITIES, split))
    project = rng.choice(vocabulary(vocab.PROJECTS, split))
    budget = _code(rng, split, 2, 4)
    room = _code(rng, split, 1, 3)
    facts = [("project lead", f"Project lead: {lead}", lead),
             ("delivery city", f"Delivery city: {city}", city),
             ("budget code", f"Budget code: {budget}", budget),
             ("meeting room", f"Meeting room: {room}", room)]
    rng.shuffle(facts)
    fw.write_docx(folder / name, f"Project {project}", [line for _, line, _ in facts])
    fact, _, answer = rng.choice(facts)
    query = rng.choice([f"According to {name}, what is the {fact}?",
                        f"What {fact} does {name} give?"])
    return Draft(query, [name], answer, TEXT, ["inspect_file_as_text"], _read_steps(name, fact, answer),
                 _values(lead, city, project, budget, room))


def make_pdf_fact(rng: random.Random, split: str, folder: Path) -> Draft:
    name = rng.choice(["invoice.pdf", "bill.pdf", "receipt.pdf"])
    number = "INV-" + draw(rng, split, lambda: str(rng.randint(10000, 99999)))
    customer = _person(rng, split)
    city = rng.choice(vocabulary(vocab.CITIES, split))
    amount = price(rng, split, 2000, 99000)
    lines = ["INVOICE", f"Invoice number: {number}", f"Customer: {customer}", f"City: {city}",
             f"Amount due: {amount:.2f}"]
    fw.write_pdf(folder / name, lines)
    variant = rng.choice(["number", "customer", "amount"])
    values = _values(number, customer, city, amount)
    if variant == "amount":
        query = rng.choice([f"What is the amount due on {name}?", f"How much is due according to {name}?"])
        t = f"{amount:.2f}"
        steps = [(f"I will read {name} as text to find the amount due.",
                  f'text = inspect_file_as_text(file_path="{name}")\nprint(text)'),
                 (f"The amount due is {t}.", f"final_answer({t})")]
        return Draft(query, [name], float(amount), MONEY, ["inspect_file_as_text"], steps, values)
    fact, answer = ("invoice number", number) if variant == "number" else ("customer", customer)
    query = rng.choice([f"What is the {fact} on {name}?", f"Who is the customer on {name}?"
                        if variant == "customer" else f"Which {fact} does {name} show?"])
    return Draft(query, [name], answer, TEXT, ["inspect_file_as_text"], _read_steps(name, fact, answer), values)


# ---------------------------------------------------------------------------------------------
# json_field (held out): a field of a nested JSON file
# ---------------------------------------------------------------------------------------------


def make_json_field(rng: random.Random, split: str, folder: Path) -> Draft:
    name = rng.choice(["config.json", "service.json", "settings.json"])
    service = rng.choice(vocabulary(vocab.SERVICES, split))
    port = draw(rng, split, lambda: rng.randint(1024, 9999))
    region = rng.choice(vocabulary(vocab.CITIES, split))
    owner = _person(rng, split)
    team = rng.choice(vocabulary(vocab.PROJECTS, split))
    data = {"service": {"name": service, "port": port, "region": region},
            "owner": {"name": owner, "team": team}, "replicas": rng.randint(1, 5)}
    fw.write_json(folder / name, data)
    fields = [("port of the service", port, 'config["service"]["port"]'),
              ("region of the service", region, 'config["service"]["region"]'),
              ("name of the owner", owner, 'config["owner"]["name"]'),
              ("team of the owner", team, 'config["owner"]["team"]')]
    fact, answer, _ = rng.choice(fields)
    query = rng.choice([f"What is the {fact} in {name}?", f"According to {name}, what is the {fact}?"])
    literal = str(answer) if isinstance(answer, int) else f'"{answer}"'
    steps = [(f"I will load {name} with the json module and print it.",
              f'import json\nwith open("{name}") as f:\n    config = json.load(f)\nprint(config)'),
             (f"The {fact} is {answer}.", f"final_answer({literal})")]
    check = INTEGER if isinstance(answer, int) else TEXT
    return Draft(query, [name], answer, check, [], steps, _values(service, port, region, owner, team))


# ---------------------------------------------------------------------------------------------
# ocr_code: text rendered large into a PNG, read back with ocr
# ---------------------------------------------------------------------------------------------


def _light(rng: random.Random) -> tuple[int, int, int]:
    return tuple(rng.randint(225, 255) for _ in range(3))  # type: ignore[return-value]


def _dark(rng: random.Random) -> tuple[int, int, int]:
    return tuple(rng.randint(0, 60) for _ in range(3))  # type: ignore[return-value]


def make_ocr_code(rng: random.Random, split: str, folder: Path) -> Draft:
    if rng.random() < 0.6:
        name = rng.choice(["label.png", "tag.png", "ticket.png"])
        code = _code(rng, split, rng.randint(2, 3), rng.randint(3, 4), sep=rng.choice(["-", ""]))
        fw.render_lines(folder / name, [code], size=rng.choice([44, 48, 52]),
                        fill=_dark(rng), background=_light(rng), margin=rng.randint(24, 40))
        query = rng.choice([f"What code is printed on {name}?", f"Read the code on the image {name}."])
        steps = [(f"I will read the text in {name} with ocr.",
                  f'text = ocr(image_path="{name}")\nprint(text)'),
                 (f"The code is {code}.", f'final_answer("{code}")')]
        return Draft(query, [name], code, TEXT, ["ocr"], steps, _values(code))
    name = rng.choice(["sign.png", "poster.png", "board.png"])
    words = sample(rng, vocab.LABEL_WORDS, split, 2)
    fw.render_lines(folder / name, words, size=rng.choice([44, 48, 52]), fill=_dark(rng),
                    background=_light(rng), spacing=rng.randint(24, 40))
    query = rng.choice([f"What are the two words on {name}, from top to bottom?",
                        f"List the words written in {name} in order from top to bottom."])
    steps = [(f"I will read the text lines of {name} with ocr.",
              f'lines = ocr(image_path="{name}")\nprint(lines)'),
             (f"The words are {words[0]} and then {words[1]}.", f"final_answer({words!r})")]
    return Draft(query, [name], words, CheckSpec(kind="list"), ["ocr"], steps, _values(words))


def _verify_ocr(folder: Path, draft: Draft) -> str | None:
    with tempfile.TemporaryDirectory() as tmp:
        lines = _tools(folder, draft.files, Path(tmp)).call("ocr", [], {"image_path": draft.files[0]})
    want = draft.answer if isinstance(draft.answer, list) else [draft.answer]
    return None if lines == want else f"ocr read {lines!r}, not {want!r}"


# ---------------------------------------------------------------------------------------------
# ocr_total (a chain): read a price list image with ocr, then add the prices
# ---------------------------------------------------------------------------------------------


def make_ocr_total(rng: random.Random, split: str, folder: Path) -> Draft:
    name = rng.choice(["menu.png", "board.png", "pricelist.png"])
    items = sample(rng, vocab.MENU_ITEMS, split, rng.randint(2, 3))
    prices = [price(rng, split, 100, 1995) for _ in items]
    total = sum(prices, Decimal(0))
    if split_of(total) != split:
        raise Retry("total in the other split")
    lines = [f"{i} {p:.2f}" for i, p in zip(items, prices)]
    fw.render_lines(folder / name, lines, size=rng.choice([40, 44, 48]), fill=_dark(rng),
                    background=_light(rng), spacing=rng.randint(20, 32))
    query = rng.choice([f"{name} is a price list. What do all the items on it cost together?",
                        f"What is the total of all the prices shown in {name}?"])
    t = _num(total)
    steps = [(f"I will read the lines of {name} with ocr.", f'lines = ocr(image_path="{name}")\nprint(lines)'),
             ("I will take the prices from the lines and add them up.",
              'import re\nprices = [float(p) for p in re.findall(r"\\d+\\.\\d+", " ".join(lines))]\n'
              "print(prices)\nprint(round(sum(prices), 2))"),
             (f"The prices add up to {t}.", f"final_answer({t})")]
    return Draft(query, [name], float(total), MONEY, ["ocr"], steps, _values(items, prices, total),
                 extra={"prices": [float(p) for p in prices]})


def _verify_ocr_total(folder: Path, draft: Draft) -> str | None:
    import re

    with tempfile.TemporaryDirectory() as tmp:
        lines = _tools(folder, draft.files, Path(tmp)).call("ocr", [], {"image_path": draft.files[0]})
    prices = [float(p) for p in re.findall(r"\d+\.\d+", " ".join(lines))]
    return None if sorted(prices) == sorted(draft.extra["prices"]) else f"ocr read {lines!r}"


# ---------------------------------------------------------------------------------------------
# face_count (held out): astronaut face crops tiled on a canvas, counted with facedetection
# ---------------------------------------------------------------------------------------------


def _face() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut()).crop((140, 30, 310, 200))


def make_face_count(rng: random.Random, split: str, folder: Path) -> Draft:
    name = rng.choice(["group.png", "photo.png", "crowd.png"])
    n = rng.randint(1, 3)
    face = _face()
    scale = rng.choice([0.85, 1.0, 1.15])
    face = face.resize((round(face.width * scale), round(face.height * scale)), Image.Resampling.LANCZOS)
    gap = rng.randint(24, 48)
    width, height = (face.width + gap) * n + gap, face.height + 2 * gap + 20
    background = tuple(rng.randint(100, 150) for _ in range(3))
    canvas = Image.new("RGB", (width, height), background)  # type: ignore[arg-type]
    for i in range(n):
        canvas.paste(face, (gap + (face.width + gap) * i, gap + rng.randint(0, 20)))
    fw.save_png(canvas, folder / name)
    query = rng.choice([f"How many faces are there in {name}?", f"Count the people's faces in {name}."])
    steps = [(f"I will detect the faces in {name} and count them.",
              f'faces = facedetection(image_path="{name}")\nprint(faces)\nprint(len(faces))'),
             (f"There {'is' if n == 1 else 'are'} {n} face{'s' if n > 1 else ''}.", f"final_answer({n})")]
    return Draft(query, [name], n, INTEGER, ["facedetection"], steps, _values(n))


def _verify_faces(folder: Path, draft: Draft) -> str | None:
    with tempfile.TemporaryDirectory() as tmp:
        boxes = _tools(folder, draft.files, Path(tmp)).call("facedetection", [], {"image_path": draft.files[0]})
    return None if len(boxes) == draft.answer else f"facedetection found {len(boxes)} faces, not {draft.answer}"


# ---------------------------------------------------------------------------------------------
# image_size: an image_edit operation whose result is measured
# ---------------------------------------------------------------------------------------------


def _picture(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    img = Image.new("RGB", size, tuple(rng.randint(0, 255) for _ in range(3)))  # type: ignore[arg-type]
    draw_ = ImageDraw.Draw(img)
    for _ in range(rng.randint(2, 5)):
        x1, y1 = rng.randrange(size[0]), rng.randrange(size[1])
        x2, y2 = min(size[0], x1 + rng.randint(10, 80)), min(size[1], y1 + rng.randint(10, 80))
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        (draw_.ellipse if rng.random() < 0.5 else draw_.rectangle)((x1, y1, x2, y2), fill=colour)
    return img


def make_image_size(rng: random.Random, split: str, folder: Path) -> Draft:
    name = rng.choice(["photo.png", "picture.png", "image.png"])
    w, h = rng.randint(120, 480), rng.randint(90, 360)
    if split_of(f"{w}x{h}") != split:
        raise Retry("size in the other split")
    fw.save_png(_picture(rng, (w, h)), folder / name)
    variant = rng.choice(["resize", "crop", "rotate"])
    if variant == "resize":
        pct = rng.choice([25, 50, 75, 150, 200])
        f = pct / 100
        new = (max(1, round(w * f)), max(1, round(h * f)))
        prompt = f"resize {pct}%"
        query = f"Resize {name} to {pct}% of its size with image_edit. What is the new size? Answer as WIDTHxHEIGHT."
    elif variant == "crop":
        x1, y1 = rng.randint(0, w // 3), rng.randint(0, h // 3)
        x2, y2 = rng.randint(x1 + 20, w), rng.randint(y1 + 20, h)
        new = (x2 - x1, y2 - y1)
        prompt = f"crop {x1},{y1},{x2},{y2}"
        query = (f"Crop {name} to the box {x1},{y1},{x2},{y2} (x1,y1,x2,y2) with image_edit. "
                 "What is the size of the cropped image? Answer as WIDTHxHEIGHT.")
    else:
        angle = rng.choice([90, 270])
        new = (h, w)
        prompt = f"rotate {angle}"
        query = f"Rotate {name} by {angle} degrees with image_edit. What is the size of the result? Answer as WIDTHxHEIGHT."
    answer = f"{new[0]}x{new[1]}"
    if split_of(answer) != split:
        raise Retry("answer in the other split")
    steps = [(f"I will {variant} the image with image_edit and print the size of the result.",
              f'from PIL import Image\nedited = image_edit(prompt="{prompt}", image_path="{name}")\n'
              "print(Image.open(edited).size)"),
             (f"The new image is {new[0]} wide and {new[1]} high.", f'final_answer("{answer}")')]
    return Draft(query, [name], answer, CheckSpec(kind="size"), ["image_edit"], steps,
                 _values(f"{w}x{h}", answer))


def _verify_image_size(folder: Path, draft: Draft) -> str | None:
    prompt = draft.steps[0][1].split('prompt="', 1)[1].split('"', 1)[0]
    with tempfile.TemporaryDirectory() as tmp:
        out = _tools(folder, draft.files, Path(tmp)).call("image_edit", [], {"prompt": prompt,
                                                                          "image_path": draft.files[0]})
        with Image.open(out) as img:
            size = f"{img.width}x{img.height}"
    return None if size == draft.answer else f"image_edit made {size}, not {draft.answer}"


# ---------------------------------------------------------------------------------------------
# crop_ocr (a chain): crop one half of an image with image_edit, then read it with ocr
# ---------------------------------------------------------------------------------------------


def make_crop_ocr(rng: random.Random, split: str, folder: Path) -> Draft:
    name = rng.choice(["tags.png", "labels.png", "badges.png"])
    codes = [_code(rng, split, 2, 3) for _ in range(2)]
    if codes[0] == codes[1]:
        raise Retry("the same code twice")
    f = fw.font(48)
    half = max(f.getbbox(c)[2] for c in codes) + 2 * rng.randint(30, 50)
    height = f.getbbox(codes[0])[3] + 2 * rng.randint(24, 36)
    img = Image.new("RGB", (2 * half, height), _light(rng))
    d = ImageDraw.Draw(img)
    ink = _dark(rng)
    for i, code in enumerate(codes):
        d.text((i * half + (half - f.getbbox(code)[2]) // 2, (height - f.getbbox(code)[3]) // 2),
               code, fill=ink, font=f)
    d.line((half, 8, half, height - 8), fill=ink, width=3)
    fw.save_png(img, folder / name)
    side = rng.choice(["left", "right"])
    answer = codes[0] if side == "left" else codes[1]
    box = f"0,0,{half},{height}" if side == "left" else f"{half},0,{2 * half},{height}"
    query = rng.choice([f"{name} shows two codes side by side. What is the code on the {side}?",
                        f"Crop the {side} half of {name} and read the code written there."])
    steps = [(f"I will check the size of {name} first.",
              f'from PIL import Image\nprint(Image.open("{name}").size)'),
             (f"I crop the {side} half, then read it in the next step.",
              f'part = image_edit(prompt="crop {box}", image_path="{name}")\nprint(part)'),
             ("Now I read the text of the cropped image with ocr.", "print(ocr(image_path=part))"),
             (f"The code on the {side} is {answer}.", f'final_answer("{answer}")')]
    return Draft(query, [name], answer, TEXT, ["image_edit", "ocr"], steps, _values(codes))


def _verify_crop_ocr(folder: Path, draft: Draft) -> str | None:
    prompt = draft.steps[1][1].split('prompt="', 1)[1].split('"', 1)[0]
    with tempfile.TemporaryDirectory() as tmp:
        tools = _tools(folder, draft.files, Path(tmp))
        part = tools.call("image_edit", [], {"prompt": prompt, "image_path": draft.files[0]})
        lines = tools.call("ocr", [], {"image_path": part})
    return None if lines == [draft.answer] else f"ocr read {lines!r} in the crop, not {draft.answer!r}"


FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("csv_total", "total of price * quantity in a CSV (pandas)", make_csv_total),
    Family("csv_lookup", "a price, the cheapest / dearest item, or the items above a price in a CSV",
           make_csv_lookup),
    Family("xlsx_sum", "a sum, a filtered sum or the best store in a spreadsheet (pandas.read_excel)",
           make_xlsx_sum),
    Family("docx_fact", "one fact among several in a Word memo (inspect_file_as_text)", make_docx_fact,
           _verify_text),
    Family("pdf_fact", "the number, customer or amount of a PDF invoice (inspect_file_as_text)", make_pdf_fact,
           _verify_text),
    Family("json_field", "a field of a nested JSON config (json module)", make_json_field, held_out=True),
    Family("ocr_code", "a code or two words rendered into a PNG (ocr)", make_ocr_code, _verify_ocr),
    Family("ocr_total", "chain: ocr a price list image, then add the prices", make_ocr_total,
           _verify_ocr_total),
    Family("face_count", "astronaut faces tiled 1-3 times (facedetection)", make_face_count, _verify_faces,
           held_out=True),
    Family("image_size", "resize / crop / rotate with image_edit, then report the new size", make_image_size,
           _verify_image_size),
    Family("crop_ocr", "chain: crop one half with image_edit, then ocr the crop", make_crop_ocr,
           _verify_crop_ocr),
]}

HELD_OUT: tuple[str, ...] = tuple(name for name, f in FAMILIES.items() if f.held_out)
