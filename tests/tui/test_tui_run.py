"""`asrtop` entry into the console: operator errors are one line and exit 2, never a traceback."""

import argparse

from asrtop.tui.run import run_tui


def args(config):
    return argparse.Namespace(config=str(config), read_only=False, prometheus=None)


def test_missing_config_is_one_line_exit_2(tmp_path, capsys):
    assert run_tui(args(tmp_path / "nope.toml")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config file not found" in err and "Traceback" not in err


def test_bad_config_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "asrtop.toml"
    bad.write_text('[cluster]\nrefresh = "fast"\n')
    assert run_tui(args(bad)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cluster.refresh" in err


def test_cli_without_subcommand_reaches_the_console(tmp_path, capsys):
    from asrtop.cli import main

    assert main(["--config", str(tmp_path / "missing.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_the_console_tracks_problems_under_the_clusters_settings_with_ten_minutes_of_history(tmp_path, monkeypatch):
    import asrtop.problems.rules as rules
    from asrtop.config import load_config
    from asrtop.problems.engine import ProblemTracker
    from asrtop.tui.run import build_app

    cfg = tmp_path / "asrtop.toml"
    cfg.write_text(f'[cluster]\nmin_ready = 2\nrefresh = 2.0\naudit_log = "{tmp_path}/audit.jsonl"\n'
                   f'[[balancers]]\nname = "h"\nkind = "haproxy"\nsocket = "{tmp_path}/admin.sock"\nbackend = "asr"\n'
                   f'[[nodes]]\nname = "node-1"\naddress = "127.0.0.1:9"\n[problems]\nleak_window = 300\n')
    asked = []

    def tracker(settings, min_ready=1):
        asked.append((settings, min_ready))
        return ProblemTracker((), settings)

    monkeypatch.setattr(rules, "tracker", tracker)
    config = load_config(cfg)
    app = build_app(args(cfg), config)
    assert asked == [(config.problems, 2)] and config.problems.leak_window == 300
    assert app.problem_tracker.settings is config.problems
    assert app.history.capacity * config.refresh >= 600  # what the trend rules look back over
