"""[problems]: every threshold and duration of the problem rules, validated like the rest of the cluster file,
and listed in README's cluster file with its default."""

from __future__ import annotations

from pathlib import Path

import pytest

from asrtop.config import PROBLEM_SETTINGS, ConfigError, ProblemsConfig, parse_config

NODES = {"nodes": [{"name": "node-1"}]}


def test_defaults_without_the_table_and_overrides_with_it():
    assert parse_config(NODES).problems.as_dict() == {k: v[0] for k, v in PROBLEM_SETTINGS.items()}
    c = parse_config({**NODES, "problems": {"leak_window": 60, "gpu_temp_critical": 95.5}})
    assert (c.problems.leak_window, c.problems.gpu_temp_critical, c.problems.leak_for) == (60.0, 95.5, 30.0)
    with pytest.raises(AttributeError):
        ProblemsConfig().no_such_setting


@pytest.mark.parametrize("table, problem", [
    ({"leak_window": 5}, "problems.leak_window: must be between 10 and 3600, got 5"),
    ({"error_ratio_warning": 1.5}, "problems.error_ratio_warning: must be between 0 and 1, got 1.5"),
    ({"leak_for": "30s"}, "problems.leak_for: must be int/float, got str '30s'"),
    ({"leak_windw": 60}, "problems.leak_windw: unknown key"),
    ({"gpu_temp_warning": 90, "gpu_temp_critical": 80}, "problems.gpu_temp_critical: must be >= gpu_temp_warning"),
    ({"error_ratio_warning": 0.3}, "problems.error_ratio_critical: must be >= error_ratio_warning"),
])
def test_a_bad_value_is_one_line_naming_the_key(table, problem):
    with pytest.raises(ConfigError) as e:
        parse_config({**NODES, "problems": table}, Path("asrtop.toml"))
    assert str(e.value).startswith(f"asrtop.toml: {problem}") and "\n" not in str(e.value)


def test_readme_lists_every_setting_with_its_default():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for key, (default, *_rest) in PROBLEM_SETTINGS.items():
        assert f"# {key} = {default:g} " in readme, key
