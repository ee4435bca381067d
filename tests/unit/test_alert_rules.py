"""The chart's alert rules: `promtool check rules` on the file and on the rendered chart,
`promtool test rules` over series histories (each alert fires when it should, and not before).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml
from rouse_testing.chart import KUBE_VERSION, helm_bin
from rouse_testing.wait import require_tool

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "charts" / "rouse" / "files" / "alerts.yaml"
HINT = "install it with `bash hack/system-deps.sh` (Debian prometheus)"
AGENT = {"namespace": "shop", "agent": "support"}
WARNING = {"severity": "warning"}


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool", HINT), *args],
        capture_output=True, text=True, timeout=120, check=False, cwd=cwd,
    )  # fmt: skip


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    shown = ",".join(f'{k}="{v}"' for k, v in {**AGENT, **labels}.items())
    return {"series": f"{name}{{{shown}}}", "values": values}


def description(name: str, labels: dict[str, str]) -> str:
    """The rule's description with its label placeholders filled (descriptions use no others)."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rule = next(r for g in groups for r in g["rules"] if r["alert"] == name)
    text = str(rule["annotations"]["description"])
    for key, value in labels.items():
        text = text.replace(f"{{{{ $labels.{key} }}}}", value)
    assert "{{" not in text, text
    return text


def alert(name: str, at: str, fired: list[tuple[dict[str, str], str]]) -> dict[str, Any]:
    """That at `at`, alert `name` fires with exactly these (labels, summary)."""
    expected = []
    for labels, summary in fired:
        full = {**AGENT, **labels}
        annotations = {"summary": summary, "description": description(name, full)}
        expected.append({"exp_labels": full, "exp_annotations": annotations})
    return {"eval_time": at, "alertname": name, "exp_alerts": expected}


def run_tests(
    tmp_path: Path, series_list: list[dict[str, str]], cases: list[dict[str, Any]]
) -> None:
    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series_list, "alert_rule_test": cases}],
    }
    path = tmp_path / "alerts_test.yaml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rule_file_is_valid() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 rules found" in result.stdout


def test_the_chart_renders_the_same_rules_as_a_prometheus_rule(tmp_path: Path) -> None:
    def render(*extra: str) -> list[dict[str, Any]]:
        argv = [helm_bin(), "template", "rouse", str(REPO / "charts" / "rouse")]
        argv += ["--kube-version", KUBE_VERSION, *extra]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)
        return [d for d in yaml.safe_load_all(done.stdout) if d]

    with_crd = render("--api-versions", "monitoring.coreos.com/v1/PrometheusRule")
    rules = [d for d in with_crd if d["kind"] == "PrometheusRule"]
    assert len(rules) == 1
    assert rules[0]["spec"] == yaml.safe_load(RULES.read_text())
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump(rules[0]["spec"]))
    result = promtool("check", "rules", str(rendered))
    assert result.returncode == 0, result.stdout + result.stderr
    # Without the prometheus-operator's CRDs there is nothing to render it into.
    assert not [d for d in render() if d["kind"] == "PrometheusRule"]


def test_budget_alerts(tmp_path: Path) -> None:
    run_tests(
        tmp_path,
        [
            # 50% for 10m, then 95% (nearly spent) for 20m, then spent.
            series("rouse_agent_budget_used_ratio", "0.5x10 0.95x20 1x20"),
            series("rouse_agent_budget_exhausted", "0x30 1x20"),
        ],
        [
            alert("RouseBudgetNearlySpent", "9m", []),
            alert("RouseBudgetNearlySpent", "14m", []),  # 4m over: not yet (for: 5m)
            alert(
                "RouseBudgetNearlySpent",
                "20m",
                [(WARNING, "Agent shop/support has used 95% of its daily budget.")],
            ),
            alert("RouseBudgetNearlySpent", "40m", []),  # spent: the other alert speaks
            alert("RouseBudgetExhausted", "30m", []),
            alert(
                "RouseBudgetExhausted",
                "32m",
                [(WARNING, "Agent shop/support has spent its daily budget and is suspended.")],
            ),
        ],
    )


def test_parked_events_and_dead_letters(tmp_path: Path) -> None:
    run_tests(
        tmp_path,
        [
            series("rouse_parked_events", "0x5 3x40", skill="triage", kind="park"),
            series("rouse_parked_events", "2x40", skill="draft", kind="park"),
            series("rouse_parked_events", "0x10 1x20 0x10", skill="draft", kind="dead-letter"),
        ],
        [
            alert("RouseEventsParked", "20m", []),
            alert(  # one per agent: 3 + 2 parked
                "RouseEventsParked",
                "36m",
                [
                    (
                        {"severity": "info"},
                        "5 event(s) of agent shop/support have been parked for 30 minutes.",
                    )
                ],
            ),
            alert("RouseDeadLetters", "12m", []),
            alert(
                "RouseDeadLetters",
                "20m",
                [
                    (
                        {**WARNING, "skill": "draft"},
                        "Skill draft of agent shop/support holds 1 dead letter(s).",
                    )
                ],
            ),
            alert("RouseDeadLetters", "35m", []),  # replayed or dropped
        ],
    )


def test_cold_start_share_above_the_agents_target(tmp_path: Path) -> None:
    run_tests(
        tmp_path,
        [
            series("rouse_agent_cold_start_target", "0.05x60"),
            # triage: 10 invocations a minute, none cold for 20m, then 2 of them (20% > 5%).
            series("rouse_ledger_invocations", "0+10x60", skill="triage"),
            series("rouse_ledger_cold_starts", "0x20 0+2x40", skill="triage"),
            # draft: 10 a minute, none cold after the first.
            series("rouse_ledger_invocations", "0+10x60", skill="draft"),
            series("rouse_ledger_cold_starts", "1x60", skill="draft"),
            # digest: every invocation cold, but 1 per 15 minutes is too few to judge.
            series("rouse_ledger_invocations", "0+0.07x60", skill="digest"),
            series("rouse_ledger_cold_starts", "0+0.07x60", skill="digest"),
        ],
        [
            alert("RouseColdStartShareHigh", "15m", []),
            alert("RouseColdStartShareHigh", "30m", []),  # above since 21m: not for 15m yet
            alert(
                "RouseColdStartShareHigh",
                "45m",
                [
                    (
                        {**WARNING, "skill": "triage"},
                        "20% of skill triage's invocations (agent shop/support) start cold,"
                        " above the warm pool's target.",
                    )
                ],
            ),
        ],
    )


def test_skills_not_ready_and_policy_inputs(tmp_path: Path) -> None:
    run_tests(
        tmp_path,
        [
            series("rouse_agent_skills_not_ready", "0x5 1x20 0x10"),
            series("rouse_agent_policy_inputs_unavailable", "0x5 1x8 0x2 1x20"),
        ],
        [
            alert("RouseSkillsNotReady", "12m", []),
            alert(
                "RouseSkillsNotReady",
                "20m",
                [
                    (
                        WARNING,
                        "1 skill(s) of agent shop/support have not been ready for 10 minutes.",
                    )
                ],
            ),
            alert("RouseSkillsNotReady", "30m", []),
            # 9 minutes missing (6m-14m), then back: no alert; missing again from 18m: fires at 28m.
            alert("RousePolicyInputsUnavailable", "14m", []),
            alert(
                "RousePolicyInputsUnavailable",
                "30m",
                [
                    (
                        WARNING,
                        "The warm-pool and budget policies of agent shop/support have had no"
                        " figures from Prometheus for 10 minutes.",
                    )
                ],
            ),
        ],
    )
