"""Which split a value belongs to, so that train and test share no values.

Every value that tells tasks apart (item names, prices, codes, words, names, the answer itself)
is assigned to one split by a stable hash of its canonical text; generators only draw values of
their own split, and redraw a task whose answer falls in the other. Integers below 10 are kept for
test (the counting answers of a held-out family). Small structural numbers inside files
(quantities, percentages, angles, counts of rows) are not values in this sense.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, TypeVar

T = TypeVar("T")
SALT = "t3edge-tasks-v1"
MAX_DRAWS = 1000


def canonical(value: Any) -> str:
    """The text a value is compared by: numbers without trailing zeros, strings case-folded."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float, Decimal)):
        d = Decimal(str(value)).quantize(Decimal("0.01")) if not isinstance(value, int) else Decimal(value)
        text = format(d.normalize(), "f")
        return "0" if text in ("-0", "0.00") else text
    if isinstance(value, (list, tuple)):
        return "|".join(canonical(v) for v in value)
    return " ".join(str(value).split()).casefold()


def split_of(value: Any) -> str:
    """`train` or `test`, fixed for each value."""
    text = canonical(value)
    if text.isdigit() and int(text) < 10:
        return "test"
    digest = hashlib.sha256(f"{SALT}:{text}".encode()).digest()
    return "train" if digest[0] % 2 == 0 else "test"


def vocabulary(words: Sequence[T], split: str) -> list[T]:
    """The words of `words` that belong to `split`."""
    return [w for w in words if split_of(w) == split]


def draw(rng: random.Random, split: str, make: Any) -> Any:
    """Call `make()` until its value belongs to `split`."""
    for _ in range(MAX_DRAWS):
        value = make()
        if split_of(value) == split:
            return value
    raise RuntimeError(f"no value of split {split} in {MAX_DRAWS} draws")


def price(rng: random.Random, split: str, low_cents: int, high_cents: int, step: int = 5) -> Decimal:
    """A price between `low_cents` and `high_cents` with cents a multiple of `step`, of `split`."""
    return draw(rng, split, lambda: Decimal(rng.randrange(low_cents, high_cents + 1, step)) / 100)


def sample(rng: random.Random, words: Sequence[T], split: str, k: int) -> list[T]:
    """`k` distinct words of `split`."""
    return rng.sample(vocabulary(words, split), k)
