"""Per-invocation budget: steps, tool calls, tokens (the wall-clock timeout is the server's).

A breach raises `BudgetExceeded` from the ctx helper that crossed the limit and
marks the budget stopped, so every later helper call raises too (a skill that
swallows the exception still stops at its next step). Thread-safe because a
plain `def` skill runs in a worker thread while the loop may time it out.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from rouse_runtime.config import Limits


class BudgetExceeded(Exception):  # noqa: N818 - the name users catch and read
    """A per-invocation limit was crossed; `limit` is steps, tool_calls, tokens or timeout."""

    def __init__(self, limit: str, used: float, maximum: float) -> None:
        super().__init__(f"budget exceeded: {limit} used {used:g} of {maximum:g}")
        self.limit = limit
        self.used = used
        self.maximum = maximum


@dataclass
class Usage:
    steps: int = 0
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def as_dict(self) -> dict[str, float]:
        return {
            "steps": self.steps,
            "tool_calls": self.tool_calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 9),
        }


class Budget:
    """Usage of one invocation against its limits."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.usage = Usage()
        self.breach: BudgetExceeded | None = None
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise the recorded breach, if any (every helper calls this first)."""
        if self.breach is not None:
            raise self.breach

    def _breach(self, limit: str, used: float, maximum: float) -> BudgetExceeded:
        if self.breach is None:
            self.breach = BudgetExceeded(limit, used, maximum)
        return self.breach

    def step(self) -> int:
        with self._lock:
            self.check()
            self.usage.steps += 1
            used, maximum = self.usage.steps, self.limits.max_steps
            if maximum is not None and used > maximum:
                raise self._breach("steps", used, maximum)
            return used

    def tool_call(self) -> int:
        with self._lock:
            self.check()
            self.usage.tool_calls += 1
            used, maximum = self.usage.tool_calls, self.limits.max_tool_calls
            if maximum is not None and used > maximum:
                raise self._breach("tool_calls", used, maximum)
            return used

    def before_llm_call(self) -> None:
        """Refuse a call when the token budget is already spent."""
        with self._lock:
            self.check()
            maximum = self.limits.max_tokens
            if maximum is not None and self.usage.tokens >= maximum:
                raise self._breach("tokens", self.usage.tokens, maximum)

    def tokens(self, input_tokens: int, output_tokens: int, cost_usd: float) -> None:
        """Record one call's usage; raise when it crossed the token limit."""
        with self._lock:
            self.usage.input_tokens += input_tokens
            self.usage.output_tokens += output_tokens
            self.usage.cost_usd += cost_usd
            maximum = self.limits.max_tokens
            if maximum is not None and self.usage.tokens > maximum:
                raise self._breach("tokens", self.usage.tokens, maximum)

    def streaming(self, output_tokens: int) -> None:
        """Raise when a model's stream, `output_tokens` into its answer, crosses the token limit.

        The exact usage comes only at the end of a stream; counting its chunks as they
        arrive lets a budget stop it mid-answer instead of after the whole answer is paid.
        """
        with self._lock:
            self.check()
            used, maximum = self.usage.tokens + output_tokens, self.limits.max_tokens
            if maximum is not None and used > maximum:
                raise self._breach("tokens", used, maximum)

    def timed_out(self, seconds: float) -> BudgetExceeded:
        """Record the wall-clock breach (the server enforces the deadline)."""
        with self._lock:
            maximum = self.limits.timeout_seconds or seconds
            return self._breach("timeout", round(seconds, 3), maximum)
