"""Issue 12 item 3: --read-only before or after the sub-command, and `asrtop --read-only demo` reaching the
console (it used to open a writable one). The demo cluster is replaced by a stand-in: this tests the wiring."""

from __future__ import annotations

import pytest

import asrtop.demo.cluster as demo_cluster
import asrtop.tui.run as tui_run
from asrtop.cli import build_parser, main
from asrtop.tui.demo_faults import DemoConsole


@pytest.mark.parametrize("argv", [["--read-only", "demo"], ["demo", "--read-only"], ["status", "--read-only"],
                                  ["--read-only", "drain", "n1"], ["drain", "n1", "--read-only"],
                                  ["recover", "--read-only"], ["--read-only"]])
def test_read_only_is_accepted_before_and_after_the_sub_command(argv):
    assert build_parser().parse_args(argv).read_only is True


@pytest.mark.parametrize("argv", [["demo"], ["status"], ["drain", "n1"], []])
def test_without_the_flag_nothing_is_read_only(argv):
    assert build_parser().parse_args(argv).read_only is False


class StandInCluster:
    """What asrtop.demo.run needs of a DemoCluster, started nowhere."""

    haproxy_port, config_path, metrics_url, url = 1, "/nonexistent/asrtop.toml", None, "http://127.0.0.1:1"
    ws_url = "ws://127.0.0.1:1"

    def __init__(self, **kw):
        pass

    def start(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("argv,read_only", [(["--read-only", "demo", "--load", "0", "--streams", "0"], True),
                                            (["demo", "--read-only", "--load", "0", "--streams", "0"], True),
                                            (["demo", "--load", "0", "--streams", "0"], False)])
def test_the_demo_console_is_read_only_when_asked(monkeypatch, argv, read_only):
    seen = []
    monkeypatch.setattr(demo_cluster, "DemoCluster", StandInCluster)
    monkeypatch.setattr(tui_run, "run_tui", lambda ns, app_class=None: seen.append((ns.read_only, app_class)) or 0)
    assert main(argv) == 0
    ((seen_read_only, app_class),) = seen
    assert seen_read_only == read_only
    assert app_class.func is DemoConsole  # the demo's console, with its fault palette
