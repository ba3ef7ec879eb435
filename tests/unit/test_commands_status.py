"""`asrtop status` (in process) when its node-facts source cannot be read at all: one line saying why, exit 5."""

from __future__ import annotations

import json

import pytest

from support.netutil import free_port

from asrtop.cli import main
from asrtop.exitcodes import UNREACHABLE


def test_status_with_prometheus_unreachable_says_why_and_exits_5(tmp_path, capsys):
    prom = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    cfg = tmp_path / "asrtop.toml"
    cfg.write_text(f'[cluster]\naudit_log = "{tmp_path / "audit.jsonl"}"\n\n'
                   '[[nodes]]\nname = "node-1"\nagent = "http://127.0.0.1:9"\n')
    assert main(["--config", str(cfg), "status", "--prometheus", prom]) == UNREACHABLE
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith(f"asrtop: node facts unavailable: Prometheus at {prom}: ")
    assert "AGENT, GPU and MODEL columns are unknown" in err
    assert f"note: node facts unavailable: Prometheus at {prom}" in out  # the table says it too
    assert main(["--config", str(cfg), "status", "--json", "--prometheus", prom]) == UNREACHABLE
    doc = json.loads(capsys.readouterr().out)
    assert doc["facts_error"].startswith(f"Prometheus at {prom}: ")


def test_status_help_says_what_its_exit_codes_mean(capsys):
    with pytest.raises(SystemExit) as done:
        main(["status", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert done.value.code == 0 and "Exit codes: 0 printed" in out and "5 a balancer could not be read" in out


def test_status_reads_without_the_cycle_collector_and_turns_it_back_on(tmp_path, monkeypatch, capsys):
    """A one-shot read keeps what it builds to the end: the collector would only walk it (issue 17, 5-10 % of
    `status`'s CPU at 1,000 nodes). Off while `status` runs, on again after (in-process callers, tests)."""
    import gc

    seen = []
    from asrtop.status_report import render_table as real

    def render(snap):
        seen.append(gc.isenabled())
        return real(snap)

    monkeypatch.setattr("asrtop.status_report.render_table", render)
    cfg = tmp_path / "asrtop.toml"
    cfg.write_text(f'[cluster]\naudit_log = "{tmp_path / "audit.jsonl"}"\n\n[[nodes]]\nname = "node-1"\n')
    assert gc.isenabled()
    main(["--config", str(cfg), "status"])
    assert seen == [False] and gc.isenabled()
    assert "node-1" in capsys.readouterr().out
