"""The env contract → Config: whole-object expectations and errors that name the variable."""

from __future__ import annotations

import subprocess
import sys

import pytest
from rouse_runtime import agentspec
from rouse_runtime.config import Config, ConfigError, Limits, Price, load_config
from rouse_runtime.scope import Scope


def test_full_env() -> None:
    agent = {
        "metadata": {"name": "support"},
        "spec": {
            "budget": {"perInvocation": {"maxSteps": 20, "maxToolCalls": 50, "maxTokens": 100000}}
        },
    }
    skill = {
        "name": "triage",
        "handler": "support.skills:triage",
        "reply": {"type": "com.example.triaged"},
        "timeoutSeconds": 300,
    }
    env = agentspec.skill_env(agent, skill, "http://broker.local/default")
    env |= {
        "PORT": "9000",
        "ROUSE_STATE_URL": "redis://redis:6379/2",
        "ROUSE_MAX_BODY_BYTES": "2048",
        "ROUSE_LLM_BASE_URL": "http://llm:8000/v1/",
        "ROUSE_LLM_API_KEY": "sk-x",
        "ROUSE_LLM_MODEL": "small",
        "ROUSE_LLM_PRICES": '{"small": {"input": 0.15, "output": 0.6}}',
    }
    assert load_config(env) == Config(
        handler="support.skills:triage",
        agent="support",
        skill="triage",
        reply_type="com.example.triaged",
        reply_source="/agents/support/triage",
        port=9000,
        broker_url="http://broker.local/default",
        state_url="redis://redis:6379/2",
        limits=Limits(max_steps=20, max_tool_calls=50, max_tokens=100000, timeout_seconds=300.0),
        max_body_bytes=2048,
        llm_base_url="http://llm:8000/v1",
        llm_api_key="sk-x",
        llm_model="small",
        llm_prices={"small": Price(input=0.15, output=0.6)},
    )


def test_defaults() -> None:
    assert load_config({"ROUSE_HANDLER": "skills:echo"}) == Config(
        handler="skills:echo",
        agent="local",
        skill="echo",
        reply_type="dev.rouse.echo.completed",
        reply_source="/agents/local/echo",
        port=8080,
        broker_url=None,
        state_url="sqlite:///tmp/rouse/state.db",
        limits=Limits(),
        max_body_bytes=1024 * 1024,
        llm_base_url="https://api.openai.com/v1",
        llm_api_key=None,
        llm_model=None,
        llm_prices={},
        log_level="INFO",
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "ROUSE_HANDLER is not set (expected module:function)"),
        ({"ROUSE_HANDLER": "skills"}, "ROUSE_HANDLER='skills' must look like module:function"),
        ({"ROUSE_MAX_STEPS": "many"}, "ROUSE_MAX_STEPS='many' is not an integer"),
        ({"ROUSE_MAX_TOKENS": "-1"}, "ROUSE_MAX_TOKENS='-1' must be >= 0"),
        ({"ROUSE_TIMEOUT_SECONDS": "0"}, "ROUSE_TIMEOUT_SECONDS='0' must be > 0"),
        ({"ROUSE_MAX_BODY_BYTES": "0"}, "ROUSE_MAX_BODY_BYTES='0' must be >= 1"),
        (
            {"ROUSE_STATE_URL": "postgres://x"},
            "ROUSE_STATE_URL='postgres://x': expected sqlite:///path or redis://host:port/db",
        ),
        (
            {"ROUSE_LLM_PRICES": "{nope"},
            "ROUSE_LLM_PRICES is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        (
            {"ROUSE_LLM_PRICES": '{"m": {"input": 1}}'},
            "ROUSE_LLM_PRICES['m'] needs numeric 'input' and 'output' (USD per 1M tokens)",
        ),
        (
            {"ROUSE_LOG_LEVEL": "loud"},
            "ROUSE_LOG_LEVEL='LOUD' must be DEBUG, INFO, WARNING or ERROR",
        ),
    ],
)
def test_bad_env_names_the_variable(env: dict[str, str], message: str) -> None:
    full = {"ROUSE_HANDLER": "skills:echo", **env} if "ROUSE_HANDLER" not in env and env else env
    with pytest.raises(ConfigError) as raised:
        load_config(full)
    assert str(raised.value) == message


def test_bad_env_exits_2_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rouse_runtime"],
        env={"ROUSE_HANDLER": "skills:echo", "ROUSE_MAX_STEPS": "x", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr.decode()) == (
        2,
        b"",
        '{"level": "error", "msg": "rouse-runtime: ROUSE_MAX_STEPS=\'x\' is not an integer"}\n',
    )


def test_package_import_is_light() -> None:
    """`import rouse_runtime` (what agentspec users pay) loads no server, store or HTTP client."""
    code = "import sys, rouse_runtime; print(sorted(m for m in ('fastapi', 'httpx', 'redis', 'sqlite3', 'prometheus_client', 'cloudevents') if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=60, check=True
    )
    assert result.stdout.decode().strip() == "[]"


def test_the_runtime_reads_the_env_agentspec_writes() -> None:
    """The env contract end to end: a launcher's skill_env, read by load_config."""
    agent = {
        "metadata": {"name": "shop"},
        "spec": {"budget": {"perInvocation": {"maxSteps": 5, "maxToolCalls": 3, "maxTokens": 900}}},
    }
    skill = {
        "name": "triage",
        "handler": "support:triage",
        "timeoutSeconds": 30,
        "reply": {"type": "dev.shop.triaged"},
    }
    env = agentspec.skill_env(agent, skill, "http://broker.test/ns/default")
    assert load_config(env) == Config(
        handler="support:triage",
        agent="shop",
        skill="triage",
        reply_type="dev.shop.triaged",
        reply_source="/agents/shop/triage",
        broker_url="http://broker.test/ns/default",
        limits=Limits(max_steps=5, max_tool_calls=3, max_tokens=900, timeout_seconds=30.0),
    )


def test_reply_naming_agrees_with_agentspec() -> None:
    from rouse_runtime import config

    assert config.default_reply_type("triage") == agentspec.reply_type({"name": "triage"})
    assert config.reply_source("shop", "triage") == agentspec.reply_source("shop", "triage")


def test_starting_a_skill_does_not_import_agentspec() -> None:
    code = (
        "import sys; import rouse_runtime.server;"
        "print(sorted(m for m in ('rouse_runtime.agentspec', 'yaml', 'jsonschema', 'httpx', 'redis') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=60, check=True
    )
    assert result.stdout.decode().strip() == "[]"


def test_namespace_in_a_pod_must_be_given() -> None:
    """Skill pods mount no token: in a pod without ROUSE_NAMESPACE the runtime refuses to start."""
    pod = {"ROUSE_HANDLER": "skills:echo", "KUBERNETES_SERVICE_HOST": "10.96.0.1"}
    with pytest.raises(ConfigError, match="ROUSE_NAMESPACE is not set"):
        load_config(pod)
    assert load_config(pod | {"ROUSE_NAMESPACE": "team-a"}).scope == Scope("team-a", "local")
    with pytest.raises(ConfigError, match="'Team_A' is not a DNS-1123 label"):
        load_config(pod | {"ROUSE_NAMESPACE": "Team_A"})
    assert load_config({"ROUSE_HANDLER": "skills:echo"}).namespace == "default"  # no cluster
