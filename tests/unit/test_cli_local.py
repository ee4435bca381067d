"""The `rouse` CLI's pure parts: argument parsing, --data, chain printing."""

from __future__ import annotations

from pathlib import Path

import pytest
from rouse_runtime import cli


def test_subcommands_are_registered() -> None:
    parser = cli.parser()
    dev = parser.parse_args(["dev", "a.yaml", "--port", "0"])
    assert (dev.agent_file, dev.port, dev.state_dir, dev.handler) == (
        Path("a.yaml"),
        0,
        Path(".rouse"),
        cli._dev,
    )
    send = parser.parse_args(["send", "t", "--data", "{}", "--wait"])
    assert (send.type, send.data, send.wait, send.source) == ("t", "{}", True, "/rouse/cli")
    replay = parser.parse_args(["deadletters", "replay", "3"])
    assert (replay.id, replay.handler) == (3, cli._deadletters_replay)


def test_read_data(tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text('{"a": [1, 2]}')
    assert cli.read_data(None) is None
    assert cli.read_data('{"a": 1}') == {"a": 1}
    assert cli.read_data(f"@{tmp_path / 'd.json'}") == {"a": [1, 2]}
    with pytest.raises(ValueError, match="--data is not JSON"):
        cli.read_data("{nope")


def test_format_chain() -> None:
    def delivery(
        skill: str, outcome: str, reply: str | None, cold: bool, error: str | None = None
    ) -> dict[str, object]:
        return {
            "skill": skill,
            "outcome": outcome,
            "attempts": 1 if outcome == "replied" else 3,
            "status": 200,
            "cold": cold,
            "seconds": 0.5,
            "replyId": None,
            "replyType": reply,
            "error": error,
        }

    chain = {
        "chain": "abc",
        "pending": 0,
        "done": True,
        "events": [
            {"id": "1", "type": "t.created", "source": "/cli", "via": "send", "data": {"x": 1},
             "routedTo": ["a"], "deliveries": [delivery("a", "replied", "t.done", True)]},
            {"id": "2", "type": "t.done", "source": "/agents/g/a", "via": "reply:a", "data": {"y": 2},
             "routedTo": ["b"], "deliveries": [delivery("b", "dead_lettered", None, False, "HTTP 500: boom")]},
            {"id": "3", "type": "t.extra", "source": "/agents/g/a", "via": "send", "data": None,
             "routedTo": [], "deliveries": []},
        ],
    }  # fmt: skip
    assert cli.format_chain(chain).splitlines() == [
        "chain abc: 3 event(s)",
        "1. t.created  [sent]  id=1",
        '   data: {"x": 1}',
        "   -> a: replied t.done (1 attempt(s), 0.50s, cold start)",
        "2. t.done  [reply of a]  id=2",
        '   data: {"y": 2}',
        "   -> b: dead_lettered: HTTP 500: boom (3 attempt(s), 0.50s)",
        "3. t.extra  [emitted by a]  id=3",
        "   data: null",
        "   -> no skill subscribes (end of chain)",
    ]
