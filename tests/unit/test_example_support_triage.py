"""The support-triage example's rules (what it does when no model is configured)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "support-triage"))

from support_triage import rules


@pytest.mark.parametrize(
    ("subject", "body", "tier", "expected"),
    [
        (
            "Site down",
            "Checkout returns 500 for everyone",
            "",
            ("outage", "urgent", ["down", "everyone"]),
        ),
        (
            "Question about invoices",
            "How do I download an invoice?",
            "",
            ("billing", "low", ["question", "how do i"]),
        ),
        ("Login", "I cannot log in, error with 2fa", "", ("account", "high", ["error", "cannot"])),
        ("Weird page", "Something looks off", "", ("general", "normal", [])),
        (
            "Phishing mail",
            "We got a phishing mail in your name",
            "enterprise",
            ("security", "urgent", ["enterprise security"]),
        ),
    ],
)
def test_triage_rules(
    subject: str, body: str, tier: str, expected: tuple[str, str, list[str]]
) -> None:
    ticket = {"id": "T", "subject": subject, "body": body, "tier": tier}
    category, priority, matched = expected
    assert rules.triage(ticket) == {
        "category": category,
        "priority": priority,
        "matched": matched,
        "method": "rules",
    }


def test_bad_ticket_names_what_is_missing() -> None:
    with pytest.raises(rules.BadTicketError, match="ticket is missing subject, body"):
        rules.validate_ticket({"id": "T-2"})
    with pytest.raises(rules.BadTicketError, match="must be a JSON object, got list"):
        rules.validate_ticket([])


def test_draft_and_digest() -> None:
    ticket = {"id": "T-1", "customer": "Ada", "subject": "Refund", "body": "b"}
    assert rules.draft(ticket, "billing", "normal") == (
        "Hi Ada,\n\nWe have received your billing question ('Refund') and are checking your account. "
        "Your ticket is T-1 (priority normal); you will hear from us within 1 business day.\n\nThe support team"
    )
    seen = [
        {"id": "T-2", "category": "outage", "priority": "urgent"},
        {"id": "T-1", "category": "outage", "priority": "urgent"},
        {"id": "T-3", "category": "billing", "priority": "low"},
    ]
    assert rules.digest(seen) == {
        "tickets": 3,
        "byCategory": {"outage": 2, "billing": 1},
        "byPriority": {"urgent": 2, "low": 1},
        "urgent": ["T-1", "T-2"],
    }


@pytest.mark.parametrize(
    ("subject", "body", "category", "expected"),
    [
        ("Charged twice", "Please refund the second charge", "billing", True),
        ("Invoice", "Can I get my money back?", "billing", True),
        ("Invoice", "Where is my invoice?", "billing", False),
        ("Refunds page down", "The refunds page is down", "outage", False),  # not billing
        ("Billing", "I refunded a customer myself", "billing", False),  # whole words only
    ],
)
def test_a_refund_request_needs_billing_and_a_refund_keyword(
    subject: str, body: str, category: str, expected: bool
) -> None:
    ticket = {"id": "T", "subject": subject, "body": body}
    assert rules.wants_refund(ticket, category) is expected
