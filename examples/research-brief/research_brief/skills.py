"""Plan questions, research each in its own worker, join the answers into one brief.

No model: the worker answers from a small table, so `rouse dev` runs it anywhere.
Swap `research` for a `ctx.llm.chat` call and nothing else changes.
"""

from __future__ import annotations

from typing import Any

from rouse_runtime import CloudEvent, Context

ANGLES = ("cost", "efficiency", "installation")
NOTES = {
    "cost": "upfront cost is high; running cost is low where electricity is cheap",
    "efficiency": "three to four units of heat per unit of electricity in mild weather",
    "installation": "needs outdoor space and, in old houses, bigger radiators",
}


async def plan(event: CloudEvent, ctx: Context) -> None:
    """Fan out one question per angle; the join id ties the answers together."""
    topic = str((event.data or {}).get("topic", "the topic"))
    questions = [{"topic": topic, "angle": angle} for angle in ANGLES]
    join = await ctx.fan_out("com.example.question.asked", questions)
    ctx.log.info("planned", topic=topic, join=join, questions=len(questions))


async def research(event: CloudEvent, ctx: Context) -> dict[str, Any]:
    """Answer one question (the reply carries the join part on to the brief)."""
    question = event.data or {}
    ctx.step("research")
    ctx.note("source_consulted", angle=question.get("angle"), source="notes table")
    return {**question, "answer": NOTES.get(str(question.get("angle")), "no notes")}


async def brief(event: CloudEvent, ctx: Context) -> dict[str, Any]:
    """The join: every answer, in question order, once."""
    joined = ctx.joined
    assert joined is not None  # `join` in agent.yaml: runs only for a whole join
    answers = [a for a in joined.results if a is not None]
    topic = answers[0]["topic"] if answers else "?"
    return {
        "topic": topic,
        "brief": [f"{a['angle']}: {a['answer']}" for a in answers],
        "missing": [ANGLES[i] for i in joined.missing],
    }
