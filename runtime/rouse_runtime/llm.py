"""`ctx.llm`: an OpenAI-compatible chat client that meters every call.

It posts to `{ROUSE_LLM_BASE_URL}/chat/completions`, reads `usage` from the
response, and charges the invocation's budget and the token/cost metrics at the
price of `prices.call_cost` (the genai-prices catalog, `ROUSE_LLM_PRICES` as
override). A model with no known price counts at cost 0, logs that once, and its
tokens go into the ledger as unpriced. httpx is imported when the first client
is built, not at start-up.

`stream(...)` asks for the same completion as Server-Sent Events (OpenAI's
`stream: true`, read with httpx-sse) and yields the text as it comes; each chunk
counts as a token against the budget while it streams (the exact usage arrives
with the last chunk), so a token limit stops an answer mid-way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rouse_runtime.config import Price
from rouse_runtime.prices import call_cost

if TYPE_CHECKING:
    import httpx

    from rouse_runtime.telemetry import Invocation, ModelCall

log = logging.getLogger("rouse.llm")
_unpriced_logged: set[str] = set()


class LLMError(RuntimeError):
    """The LLM endpoint failed or answered something that is not a chat completion."""


@dataclass(frozen=True)
class ChatResult:
    """One completion: the first choice's text, the model that answered, its usage and cost."""

    content: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    raw: Mapping[str, Any]


# Called with (model, input_tokens, output_tokens, cost) before the result is returned;
# raises BudgetExceeded when the call crossed the token limit.
UsageSink = Callable[[str, int, int, float], None]
# Records a call's spend durably (the ledger) as soon as it is known, before anything
# else can stop the invocation: a timeout or a killed pod must not hide it.
# The last argument says whether the price is known (prices.py): unknown ones are 0 USD.
SpendRecorder = Callable[[int, int, float, bool], Awaitable[None]]


class LLMClient:
    """Chat completions for one invocation (budget-metered through `before` and `charge`)."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        model: str | None,
        prices: Mapping[str, Price],
        http: Callable[[], httpx.AsyncClient],
        before: Callable[[], None],
        charge: UsageSink,
        record: SpendRecorder | None = None,
        span: Invocation | None = None,
        streaming: Callable[[int], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self._prices = prices
        self._http = http
        self._before = before
        self._charge = charge
        self._record = record
        self._span = span
        self._streaming = streaming

    async def chat(
        self, messages: list[dict[str, Any]], *, model: str | None = None, **params: Any
    ) -> ChatResult:
        """POST /chat/completions; extra params (temperature, tools, ...) pass through."""
        chosen = model or self.model
        if not chosen:
            raise LLMError("no model: pass model=... or set ROUSE_LLM_MODEL")
        if self._span is None:
            return await self._chat(messages, chosen, params, None)
        call = self._span.model_call(chosen, self.base_url, params)
        try:
            return await self._chat(messages, chosen, params, call)
        except BaseException as exc:
            call.end(error=exc)  # a no-op when the call itself ended well (a budget stop after)
            raise

    async def _chat(
        self,
        messages: list[dict[str, Any]],
        chosen: str,
        params: dict[str, Any],
        call: ModelCall | None,
    ) -> ChatResult:
        self._before()
        headers = {"authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        url = f"{self.base_url}/chat/completions"
        try:
            response = await self._http().post(
                url, json={"model": chosen, "messages": messages, **params}, headers=headers
            )
        except Exception as exc:
            raise LLMError(f"POST {url} failed: {exc!r}") from exc
        if response.status_code >= 400:
            raise LLMError(f"POST {url} answered {response.status_code}: {response.text[:300]}")
        try:
            body = response.json()
            usage = body.get("usage") or {}
            input_tokens = int(usage.get("prompt_tokens", 0))
            output_tokens = int(usage.get("completion_tokens", 0))
            answered = str(body.get("model") or chosen)
            choices = body.get("choices") or [{}]
            content = str((choices[0].get("message") or {}).get("content") or "")
        except (ValueError, AttributeError, TypeError) as exc:
            raise LLMError(
                f"POST {url} answered a body that is not a chat completion: {exc}"
            ) from exc
        cost = await self._settle(chosen, answered, input_tokens, output_tokens, call, body)
        return ChatResult(content, answered, input_tokens, output_tokens, cost, body)

    async def stream(
        self, messages: list[dict[str, Any]], *, model: str | None = None, **params: Any
    ) -> AsyncIterator[str]:
        """POST /chat/completions with stream: true; yields the answer's text as it arrives.

        Charged like `chat` when the stream ends, from the usage of its last chunk; a stream
        stopped early (a budget, the caller leaving) is charged the chunks received as output
        tokens and an estimate of the prompt (4 characters a token), never nothing.
        """
        from httpx_sse import SSEError, aconnect_sse

        chosen = model or self.model
        if not chosen:
            raise LLMError("no model: pass model=... or set ROUSE_LLM_MODEL")
        self._before()
        headers = {"authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        url = f"{self.base_url}/chat/completions"
        body = {
            "model": chosen,
            "messages": messages,
            **params,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        received, answered, usage = 0, chosen, None
        try:
            async with aconnect_sse(
                self._http(), "POST", url, json=body, headers=headers
            ) as source:
                response = source.response
                if response.status_code >= 400:
                    await response.aread()
                    raise LLMError(
                        f"POST {url} answered {response.status_code}: {response.text[:300]}"
                    )
                async for sse in source.aiter_sse():
                    if sse.data.strip() == "[DONE]":
                        break
                    chunk = json.loads(sse.data)
                    usage = chunk.get("usage") or usage
                    answered = str(chunk.get("model") or answered)
                    for choice in chunk.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            received += 1
                            if self._streaming is not None:
                                self._streaming(received)  # BudgetExceeded past the limit
                            yield str(text)
        except LLMError:
            raise  # refused: nothing was generated, nothing to charge
        except (SSEError, ValueError, AttributeError, TypeError) as exc:
            await self._settle_early(chosen, answered, messages, received)
            raise LLMError(
                f"POST {url} streamed something that is not a chat completion: {exc}"
            ) from exc
        except BaseException:
            await self._settle_early(chosen, answered, messages, received)
            raise
        if usage is None:
            await self._settle_early(chosen, answered, messages, received)
            return
        await self._settle(
            chosen,
            answered,
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
        )

    async def _settle_early(
        self, chosen: str, answered: str, messages: list[dict[str, Any]], received: int
    ) -> None:
        """Charge a stream that ended without its usage; the budget's breach is already set."""
        prompt = sum(len(str(m.get("content") or "")) for m in messages) // 4 + 1
        try:
            await self._settle(chosen, answered, prompt, received)
        except Exception as exc:  # the stream's own error wins; the spend is recorded
            log.debug("settling an interrupted stream: %s", exc)

    async def _settle(
        self,
        chosen: str,
        answered: str,
        input_tokens: int,
        output_tokens: int,
        call: ModelCall | None = None,
        body: dict[str, Any] | None = None,
    ) -> float:
        """Price one call, end its span (`call`, with the response `body`), record it in the
        ledger, charge the budget (may raise BudgetExceeded)."""
        models = (chosen,) if answered == chosen else (chosen, answered)
        priced, price = call_cost(self._prices, models, input_tokens, output_tokens, self.base_url)
        if not price.known and priced not in _unpriced_logged:
            _unpriced_logged.add(priced)
            log.warning(
                "no known price for model %s (genai-prices, ROUSE_LLM_PRICES): its cost counts"
                " as 0 and its tokens are recorded as unpriced",
                priced,
            )
        cost = price.usd
        if call is not None:
            choices = (body or {}).get("choices") or []
            call.end(
                response_model=answered,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                response_id=str((body or {}).get("id") or "") or None,
                finish_reasons=tuple(
                    str(c["finish_reason"])
                    for c in choices
                    if isinstance(c, dict) and c.get("finish_reason")
                ),
                cost_usd=cost,
            )
        if self._record is not None:
            await self._record(input_tokens, output_tokens, cost, price.known)
        self._charge(chosen, input_tokens, output_tokens, cost)
        return cost
