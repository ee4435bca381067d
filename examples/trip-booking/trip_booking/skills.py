"""Book a flight, then a hotel; a hotel that cannot be had gets the flight cancelled.

No outside service: bookings are made-up references, so `rouse dev` runs it
anywhere. The compensation is declared in agent.yaml, not coded here.
"""

from __future__ import annotations

import hashlib
from typing import Any

from rouse_runtime import CloudEvent, Context

NO_HOTELS = {"Atlantis"}  # always full: the hotel step fails, is dead-lettered, the flight undone
WAITING_LIST = {"Avalon"}  # the hotel confirms later (or the run is cancelled meanwhile)


def _reference(kind: str, key: str) -> str:
    return f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


async def book_flight(event: CloudEvent, ctx: Context) -> dict[str, Any]:
    trip = event.data or {}
    ctx.tool("airline.book")
    return {"to": trip.get("to"), "flight": _reference("FL", f"{event['id']}/{trip.get('to')}")}


async def book_hotel(event: CloudEvent, ctx: Context) -> dict[str, Any]:
    if ctx.resumed is not None:  # the waiting list confirmed
        booked = ctx.resumed.checkpoint
        return {**booked, "hotel": _reference("HT", booked["flight"])}
    booked = event.data or {}
    if booked.get("to") in NO_HOTELS:
        raise RuntimeError(f"no hotel in {booked.get('to')}")
    if booked.get("to") in WAITING_LIST:
        await ctx.wait_for("com.example.hotel.confirmed", key=booked["flight"], data=booked)
    return {**booked, "hotel": _reference("HT", booked["flight"])}


async def cancel_flight(event: CloudEvent, ctx: Context) -> dict[str, Any]:
    """The compensation: `result` is what book-flight replied."""
    booked = (event.data or {}).get("result") or {}
    ctx.tool("airline.cancel")
    return {"cancelled": booked.get("flight"), "undoes": event.get("rousecompensates")}
