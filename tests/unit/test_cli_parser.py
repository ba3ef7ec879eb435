"""`asrtop`'s command line is built for the sub-command given only (issue 17: all of them cost `asrtop status`
~5 % of its start): it must read every command line exactly as the whole parser does."""

from __future__ import annotations

import argparse

import pytest

from asrtop.cli import COMMANDS, build_parser, command_in, terminal_columns

ARGVS = [
    ["status"], ["--config", "c.toml", "status", "--json"], ["--config=c.toml", "status"],
    ["--conf", "drain", "status"],  # a prefix of --config takes "drain" as its value: the command is status
    ["--prom", "http://p:9090", "check", "--json"], ["--read-only", "drain", "n1", "--wait", "--timeout", "5"],
    ["weight", "n1", "7"], ["backup", "n1", "on"], ["recover", "--dry-run"], ["rollout", "n1", "--dry-run"],
    ["export", "alert-rules"], ["demo", "--nodes", "2"], ["maint", "n1", "--force"], ["ready", "n1"],
    ["status", "drain"], ["--", "status"], [],
]


def parsed(parser: argparse.ArgumentParser, argv: list[str]) -> tuple:
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit as e:
        return ("exit", e.code)
    return vars(args), extra


@pytest.mark.parametrize("argv", ARGVS, ids=" ".join)
def test_the_sub_command_alone_reads_argv_as_the_whole_parser(argv, capsys):
    command = command_in(argv)
    assert parsed(build_parser(command), argv) == parsed(build_parser(), argv)
    if command is not None:
        assert build_parser(command)._subparsers._group_actions[0].choices.keys() == {command}


def test_which_command():
    assert [command_in(a) for a in (["--conf", "drain", "status"], ["--config=x", "ready", "n"], ["bogus"],
                                     ["--", "status"], ["-h"])] == ["status", "ready", None, None, None]


def test_top_level_help_still_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        build_parser(command_in(["--help"])).parse_args(["--help"])
    out = capsys.readouterr().out
    assert all(c in out for c in COMMANDS)


@pytest.mark.parametrize("columns", ["60", "0", "wide", None])
def test_help_as_wide_as_shutil_would_make_it(columns, monkeypatch):
    """The parser's formatter asks the terminal's width without shutil (which `status` then never loads)."""
    import shutil

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert terminal_columns() == shutil.get_terminal_size().columns
    assert build_parser("status")._get_formatter()._width == shutil.get_terminal_size().columns - 2
