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
