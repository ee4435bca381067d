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
* a question at the front door (``ask``): answered from ``ANSWERS`` by the
  same categories, in chunks of a few words; it opens a ticket when the
  request says ``"ticket": true`` or the question asks to open, create or
  file one.
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


ANSWERS = {
    "security": "If you think your account is at risk, change your password now and turn on two-factor sign-in; then ask us to open a ticket so our security team can look at it.",
    "outage": "Our status page shows every incident as it happens. If the service is down for you, ask us to open a ticket and our on-call engineers will be paged.",
    "billing": "Invoices are under Settings, Billing, where you can download each one. Refunds go back to the card you paid with within 5 to 10 business days.",
    "account": "You can reset your password from the sign-in page with Forgot password. We never ask for your password, by mail or by phone.",
    "bug": "Thank you for telling us. Reloading the page often helps; if it does not, ask us to open a ticket with the steps that lead to the error.",
    "general": "Thank you for your question. Our help centre has guides for most tasks; if you need a person, ask us to open a ticket.",
}
CHUNK_WORDS = 4
TICKET_ASK = re.compile(r"\b(open|create|file|raise)\b.*\bticket\b", re.IGNORECASE)


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


def validate_question(data: Any) -> dict[str, Any]:
    """A front-door request: ``question`` (required), ``customer``, ``ticket`` (open one)."""
    if not isinstance(data, dict) or not str(data.get("question") or "").strip():
        raise BadTicketError('the request must be a JSON object with a "question"')
    return data


def wants_ticket(request: dict[str, Any]) -> bool:
    """Whether the customer asks for a ticket (explicitly, or in the question's words)."""
    return bool(request.get("ticket")) or bool(TICKET_ASK.search(str(request["question"])))


def ticket_from(request: dict[str, Any], ticket_id: str) -> dict[str, Any]:
    """The ticket a front-door question opens: its first line is the subject."""
    question = str(request["question"]).strip()
    return {
        "id": ticket_id,
        "customer": str(request.get("customer") or "there"),
        "subject": question.splitlines()[0][:80],
        "body": question,
    }


def answer_chunks(question: str) -> list[str]:
    """The templated answer to a question, in chunks of a few words (as a model would stream)."""
    category = triage({"subject": question, "body": ""})["category"]
    words = ANSWERS[category].split(" ")
    return [
        " ".join(words[i : i + CHUNK_WORDS]) + (" " if i + CHUNK_WORDS < len(words) else "")
        for i in range(0, len(words), CHUNK_WORDS)
    ]
