"""How a stage says that an item is dropped, that the API gave up, or that the budget is spent."""

from __future__ import annotations

from t3edge.errors import T3Error


class Rejected(Exception):
    """This item is dropped at this stage, for `reason` (a short, countable label)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ApiFailed(Rejected):
    """The API kept failing after every retry (or refused the request outright).

    Transient: the item is recorded as dropped, and a later run tries it again.
    """


class BudgetExhausted(T3Error):
    """The spending cap is reached: no new requests are sent."""
