"""What a model call cost: the maintained `genai-prices` catalog, ROUSE_LLM_PRICES on top.

`ROUSE_LLM_PRICES` (USD per 1M tokens) overrides the catalog for the models it
names (a negotiated rate, a self-hosted model). Every other model is priced by
genai-prices (pydantic's catalog of provider prices), matched by the model name
and the provider's API URL (`ROUSE_LLM_BASE_URL`). A model neither knows is
`unpriced`: its tokens still count toward token budgets and go into the ledger
as unpriced, so the budget's condition says that a cost limit cannot see them.

genai-prices is imported on the first model call, never at start-up (it takes
about half a second to import: a cold start does not pay for it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from rouse_runtime.config import Price

log = logging.getLogger("rouse.prices")


@dataclass(frozen=True)
class Cost:
    """One call's cost in USD, and where the price came from (`unpriced`: nowhere)."""

    usd: float
    source: str  # "override" | "genai-prices" | "unpriced"

    @property
    def known(self) -> bool:
        return self.source != "unpriced"


def _override(price: Price, input_tokens: int, output_tokens: int) -> Cost:
    usd = (input_tokens * price.input + output_tokens * price.output) / 1_000_000
    return Cost(usd, "override")


@lru_cache(maxsize=1)
def _catalog() -> Any:
    """genai_prices, imported once, on first use."""
    import genai_prices

    return genai_prices


def catalog_cost(
    model: str, input_tokens: int, output_tokens: int, api_url: str | None = None
) -> Cost:
    """The catalog's price of a call; `unpriced` when it does not know the model."""
    prices = _catalog()
    usage = prices.Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    for url in (api_url, None):  # by provider URL first; a self-hosted URL matches nothing
        try:
            found = prices.calc_price(usage, model_ref=model, provider_api_url=url)
        except LookupError:
            continue
        return Cost(float(found.total_price), "genai-prices")
    return Cost(0.0, "unpriced")


def call_cost(
    overrides: Mapping[str, Price],
    models: tuple[str, ...],
    input_tokens: int,
    output_tokens: int,
    api_url: str | None = None,
) -> tuple[str, Cost]:
    """(the model priced, its cost): the first of `models` (asked for, then answered) that
    ROUSE_LLM_PRICES names, else the first the catalog knows, else unpriced."""
    for model in models:
        if model in overrides:
            return model, _override(overrides[model], input_tokens, output_tokens)
    for model in models:
        cost = catalog_cost(model, input_tokens, output_tokens, api_url)
        if cost.known:
            return model, cost
    return models[0], Cost(0.0, "unpriced")
