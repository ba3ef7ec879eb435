"""[rollout] in the cluster file: the hook is an argv template (split like a command line, never a shell string),
every {field} is one asrtop fills in, and a bad value is one line naming the key."""

from __future__ import annotations

import pytest

from asrtop.config import ConfigError, RolloutConfig, parse_config, split_hook

NODES = {"nodes": [{"name": "node-1", "address": "127.0.0.1:7860"}]}


def rollout(table: dict) -> RolloutConfig:
    return parse_config({**NODES, "rollout": table}).rollout


def test_no_table_means_no_hook_and_the_documented_defaults():
    r = parse_config(NODES).rollout
    assert r.hook == () and r.max_unavailable == 1 and r.canary is None and r.canary_api == "openai"


def test_a_hook_string_is_split_like_a_command_line_and_keeps_quoted_spaces():
    r = rollout({"hook": "ssh {host} 'sudo systemctl restart fun-asr' --node {node}", "ramp": 5})
    assert r.hook == ("ssh", "{host}", "sudo systemctl restart fun-asr", "--node", "{node}")
    assert r.ramp == 5.0


def test_a_hook_list_is_taken_as_the_argv():
    assert rollout({"hook": ["/opt/up", "{address}", "a;b"]}).hook == ("/opt/up", "{address}", "a;b")


@pytest.mark.parametrize("table, says", [
    ({"hook": "up {nod}"}, "rollout.hook: the hook names {nod}: known fields are {node}, {server}"),
    ({"hook": 'up "{node}'}, "rollout.hook: cannot split the hook"),
    ({"hook": "   "}, "rollout.hook: the hook is empty"),
    ({"hook": ["up", ""]}, "rollout.hook: must be a non-empty list of strings"),
    ({"canary_api": "grpc"}, "rollout.canary_api: must be one of openai, funasr, gradio"),
    ({"max_unavailable": 0}, "rollout.max_unavailable: must be >= 1"),
    ({"health_timeout": 0}, "rollout.health_timeout: must be between"),
    ({"hooks": "x"}, "rollout.hooks: unknown key"),
])
def test_bad_values_are_one_line_naming_the_key(table, says):
    with pytest.raises(ConfigError) as e:
        rollout(table)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_split_hook_refuses_a_brace_that_is_no_field():
    with pytest.raises(ValueError, match="literal braces"):
        split_hook("up {node")
