"""Rule-based triage and templated replies: the work done when no model is configured.

These are deliberately plain, documented rules (not canned "model" text):

* keywords match whole words or phrases, case-insensitively ("down" does not
  match "download");
* category: the first category whose keywords occur in the subject or body
  (billing, outage, security, account, bug), else ``general``;
* priority: ``urgent`` when an urgent keyword occurs (down, outage, breach,
  data loss, ...) or the customer tier is ``enterprise`` and the category is
  outage/security; ``high`` for a high keyword (error, cannot, failed, ...);
  ``low`` for a low keyword (question, feature request, ...); else ``normal``;
* reply: a template per category, filled with the customer's name, the ticket
  id and the promised response time of the priority;
* refund: a billing ticket with a refund keyword (refund, money back,
  reimburse) asks a person to approve a refund.
"""

from __future__ import annotations

import re
from typing import Any

CATEGORIES: dict[str, tuple[str, ...]] = {
    "security": (
        "breach",
        "hacked",
        "phishing",
        "vulnerability",
        "leak",
        "unauthorized",
        "unauthorised",
    ),
    "outage": ("down", "outage", "unavailable", "not loading", "timeout", "500", "502", "503"),
    "billing": (
        "invoice",
        "invoices",
        "charge",
        "charged",
        "refund",
        "billing",
        "payment",
        "credit card",
        "price",
    ),
    "account": ("password", "login", "log in", "sign in", "2fa", "locked", "account"),
    "bug": ("error", "bug", "crash", "broken", "exception", "wrong"),
}

URGENT = ("down", "outage", "breach", "hacked", "data loss", "everyone", "all users", "urgent")
HIGH = ("error", "cannot", "can't", "failed", "fails", "blocked", "crash", "charged twice")
LOW = ("question", "feature request", "suggestion", "how do i", "wondering")
REFUND = ("refund", "money back", "reimburse")

RESPONSE_TIME = {
    "urgent": "1 hour",
    "high": "4 hours",
    "normal": "1 business day",
    "low": "3 business days",
}

TEMPLATES = {
    "security": "We take security reports seriously: our security team is looking at {subject!r} now.",
    "outage": "We are sorry about the disruption ({subject!r}); our on-call engineers are on it.",
    "billing": "We have received your billing question ({subject!r}) and are checking your account.",
    "account": "We can help with your account ({subject!r}); please do not share your password with anyone, us included.",
    "bug": "Thank you for reporting {subject!r}; we are reproducing it.",
    "general": "Thank you for writing to us about {subject!r}.",
}


class BadTicketError(ValueError):
    """A ticket the skill cannot work on (it is retried, then dead-lettered)."""


def validate_ticket(data: Any) -> dict[str, Any]:
    """The ticket fields the chain needs; raises BadTicketError naming what is missing."""
    if not isinstance(data, dict):
        raise BadTicketError(f"ticket must be a JSON object, got {type(data).__name__}")
    missing = [
        field for field in ("id", "subject", "body") if not str(data.get(field) or "").strip()
    ]
    if missing:
        raise BadTicketError(f"ticket is missing {', '.join(missing)}")
    return data


def _has(text: str, words: tuple[str, ...]) -> list[str]:
    """The keywords that occur in ``text`` as whole words or phrases ("down", not "download")."""
    return [word for word in words if re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text)]


def triage(ticket: dict[str, Any]) -> dict[str, Any]:
    """Category, priority and the keywords that decided them."""
    text = f"{ticket['subject']}\n{ticket['body']}".lower()
    category = next((name for name, words in CATEGORIES.items() if _has(text, words)), "general")
    urgent, high, low = _has(text, URGENT), _has(text, HIGH), _has(text, LOW)
    enterprise = str(ticket.get("tier", "")).lower() == "enterprise"
    if urgent or (enterprise and category in ("outage", "security")):
        priority, why = "urgent", urgent or [f"enterprise {category}"]
    elif high:
        priority, why = "high", high
    elif low:
        priority, why = "low", low
    else:
        priority, why = "normal", []
    return {"category": category, "priority": priority, "matched": why, "method": "rules"}


def wants_refund(ticket: dict[str, Any], category: str) -> bool:
    """A billing ticket that asks for money back: a person must approve the refund."""
    return category == "billing" and bool(
        _has(f"{ticket['subject']}\n{ticket['body']}".lower(), REFUND)
    )


def draft(ticket: dict[str, Any], category: str, priority: str) -> str:
    """A templated first reply for the customer."""
    name = str(ticket.get("customer") or "there")
    opening = TEMPLATES.get(category, TEMPLATES["general"]).format(subject=ticket["subject"])
    return (
        f"Hi {name},\n\n{opening} Your ticket is {ticket['id']} (priority {priority}); "
        f"you will hear from us within {RESPONSE_TIME[priority]}.\n\nThe support team"
    )


def digest(tickets: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts per category and priority, and the urgent ticket ids."""
    by_category: dict[str, int] = {}
    by_priority: dict[str, int] = {}
    for ticket in tickets:
        by_category[ticket["category"]] = by_category.get(ticket["category"], 0) + 1
        by_priority[ticket["priority"]] = by_priority.get(ticket["priority"], 0) + 1
    urgent = sorted(t["id"] for t in tickets if t["priority"] == "urgent")
    return {
        "tickets": len(tickets),
        "byCategory": by_category,
        "byPriority": by_priority,
        "urgent": urgent,
    }
