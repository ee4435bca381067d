"""The support-triage skills. Each takes ``(event, ctx)`` and returns reply data.

triage    com.example.ticket.created -> com.example.ticket.triaged
draft     com.example.ticket.triaged -> com.example.reply.drafted (+ emits com.example.ticket.urgent)
escalate  com.example.ticket.urgent  -> com.example.ticket.escalated
refund    com.example.refund.requested (+ emitted by draft for a refund request): waits for a
          person's com.example.refund.approved (rousekey = ticket id) -> com.example.refund.issued
digest    schedule / com.example.digest.requested -> com.example.digest.ready
ask       the front door (HTTP): a customer's question -> a streamed answer, or a ticket
          handed to triage (ctx.emit com.example.ticket.created) and the run to follow

With a model configured (ROUSE_LLM_BASE_URL and ROUSE_LLM_MODEL), triage and
draft ask it through ``ctx.llm`` (tokens and cost are metered against the
agent's budget); otherwise they apply the rules in ``rules.py`` and say so in
the ``method`` field of their reply.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from support_triage import rules

TICKETS_KEY = "support-triage/tickets"
REFUND_REQUESTED = "com.example.refund.requested"
REFUND_APPROVED = "com.example.refund.approved"


def _model_configured() -> bool:
    return bool(os.environ.get("ROUSE_LLM_BASE_URL") and os.environ.get("ROUSE_LLM_MODEL"))


async def _ask_model(ctx: Any, system: str, user: str) -> str:
    """One chat completion through the budget-metered client."""
    answer = await ctx.llm.chat(
        [{"role": "system", "content": system}, {"role": "user", "content": user}]
    )
    return str(answer.content)


async def triage(event: Any, ctx: Any) -> dict[str, Any]:
    """Classify a new ticket: category and priority (model, else keyword rules)."""
    ticket = rules.validate_ticket(event.data)
    ctx.step()
    result = rules.triage(ticket)
    if _model_configured():
        text = await _ask_model(
            ctx,
            "Classify the support ticket. Answer with JSON only: "
            '{"category": one of ' + json.dumps([*rules.CATEGORIES, "general"]) + ', "priority": '
            'one of ["urgent", "high", "normal", "low"]}.',
            f"Subject: {ticket['subject']}\n\n{ticket['body']}",
        )
        try:
            answer = json.loads(text)
            if answer.get("priority") in rules.RESPONSE_TIME:
                result = {
                    "category": str(answer.get("category") or result["category"]),
                    "priority": answer["priority"],
                    "matched": [],
                    "method": "model",
                }
        except (ValueError, AttributeError):
            ctx.log.warning("model answer is not the JSON asked for; keeping the rule-based triage")
    return {"ticket": ticket, **result}


async def draft(event: Any, ctx: Any) -> dict[str, Any]:
    """Draft the first reply; hand urgent tickets to escalation (fan-out)."""
    triaged = event.data
    ticket, category, priority = triaged["ticket"], triaged["category"], triaged["priority"]
    ctx.step()
    method = "template"
    text = rules.draft(ticket, category, priority)
    if _model_configured():
        text = await _ask_model(
            ctx,
            "You write short, kind first replies to customer support tickets. "
            f"Promise an answer within {rules.RESPONSE_TIME[priority]}. Sign as 'The support team'.",
            f"Customer: {ticket.get('customer', 'unknown')}\nSubject: {ticket['subject']}\n\n{ticket['body']}",
        )
        method = "model"
    drafted = {
        "ticketId": ticket["id"],
        "category": category,
        "priority": priority,
        "reply": text,
        "method": method,
    }
    await _remember(ctx, {"id": ticket["id"], "category": category, "priority": priority})
    if priority == "urgent":
        await ctx.emit("com.example.ticket.urgent", {"ticket": ticket, "draft": drafted})
    if rules.wants_refund(ticket, category):
        await ctx.emit(REFUND_REQUESTED, {"ticket": ticket})
    return drafted


async def escalate(event: Any, ctx: Any) -> dict[str, Any]:
    """Page the on-call person for an urgent ticket (recorded in state, exactly once per event)."""
    ticket = event.data["ticket"]
    oncall = os.environ.get("SUPPORT_ONCALL", "support-oncall@example.com")
    ctx.step()
    page = {
        "ticketId": ticket["id"],
        "oncall": oncall,
        "subject": ticket["subject"],
        "draft": event.data["draft"]["reply"],
    }
    ctx.tool("oncall.page", ticket=ticket["id"])  # metered (ROUSE_MAX_TOOL_CALLS) and traced
    await ctx.state.set(f"support-triage/escalations/{ticket['id']}", page)
    ctx.log.info("escalated", ticket=ticket["id"], oncall=oncall)
    return {"ticketId": ticket["id"], "escalatedTo": oncall, "priority": "urgent"}


async def refund(event: Any, ctx: Any) -> dict[str, Any] | None:
    """Refund a ticket once a person approves it.

    The request suspends the skill (``ctx.wait_for``): nothing runs and no pod is held while
    the approver thinks it over. The approval, ``com.example.refund.approved`` with the
    extension attribute ``rousekey`` set to the ticket id, resumes it once, wherever it lands.
    """
    if ctx.resumed is not None:
        request, approval = ctx.resumed.checkpoint, event.data or {}
        ctx.step()
        issued = {
            "ticketId": request["ticketId"],
            "customer": request["customer"],
            "approvedBy": approval.get("by", "unknown"),
            "waitedSeconds": round(time.time() - ctx.resumed.since, 1),
        }
        await ctx.state.set(f"support-triage/refunds/{request['ticketId']}", issued)
        ctx.log.info("refund issued", ticket=request["ticketId"], approved_by=issued["approvedBy"])
        return issued
    if event["type"] == REFUND_APPROVED:  # already approved, or a ticket nobody asked about
        ctx.log.warning("no refund awaits this approval", rousekey=event.get("rousekey"))
        return None
    ticket = event.data["ticket"]
    request = {"ticketId": ticket["id"], "customer": ticket.get("customer", "unknown")}
    ctx.log.info("refund awaits approval", ticket=ticket["id"])
    await ctx.wait_for(REFUND_APPROVED, key=ticket["id"], data=request)
    return None  # not reached: wait_for ends the invocation


async def digest(event: Any, ctx: Any) -> dict[str, Any]:
    """Summarise the tickets drafted since the last digest, then start a new period.

    Woken by its schedule (a PingSource event whose data is the schedule's
    ``data``) or by a ``com.example.digest.requested`` event.
    """
    tickets = await ctx.state.get(TICKETS_KEY) or []
    await ctx.state.set(TICKETS_KEY, [])
    ctx.step()
    window = event.data.get("window") if isinstance(event.data, dict) else None
    ctx.log.info("digest", tickets=len(tickets), window=window)
    return {"window": window, **rules.digest(tickets)}


async def _remember(ctx: Any, ticket: dict[str, Any]) -> None:
    """Add a ticket to the digest list (read-modify-write: two drafts at the very same moment
    can lose one entry; a production agent would keep one key per ticket or use Redis lists)."""
    tickets = await ctx.state.get(TICKETS_KEY) or []
    await ctx.state.set(TICKETS_KEY, [*tickets, ticket])


async def ask(event: Any, ctx: Any) -> AsyncIterator[dict[str, Any]]:
    """The front door: answer a customer's question as it is written, or open a ticket.

    Every chunk is ``{"text", "method"}`` (``model`` or ``template``); a templated chunk
    counts one step of the budget, a model's answer its tokens. A ticket is handed to triage with ``ctx.emit``; the stream's first
    event already named the run, which the customer can follow until the reply is drafted.
    """
    request = rules.validate_question(event.data)
    if rules.wants_ticket(request):
        ticket = rules.ticket_from(request, f"T-{uuid.uuid4().hex[:8]}")
        ctx.step()
        await ctx.emit("com.example.ticket.created", ticket)
        yield {
            "text": f"Ticket {ticket['id']} is open; follow this run to see it triaged and answered.",
            "ticket": ticket["id"],
            "handedOff": "triage",
        }
        return
    if _model_configured():
        system = "You answer customers' support questions in two or three short sentences."
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": str(request["question"])},
        ]
        async for text in ctx.llm.stream(messages):  # metered per chunk against maxTokens
            yield {"text": text, "method": "model"}
        return
    for text in rules.answer_chunks(str(request["question"])):
        ctx.step()
        yield {"text": text, "method": "template"}
