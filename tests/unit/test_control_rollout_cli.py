"""`asrtop rollout`'s front end (asrtop.rollout_cli): the flags over [rollout], bad input in one line, and the
three outputs (pipe lines, a terminal's live line, --json ending with an "end" event whatever happened)."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import signal

import pytest

from asrtop.cli import build_parser
from asrtop.config import ClusterConfig, RolloutConfig
from asrtop.control.rollout_model import RolloutEvent
from asrtop.rollout_cli import Output, _run, rollout, settings_from


def args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["rollout", *argv])


class Tty(io.StringIO):
    def isatty(self):
        return True


def ev(kind: str, node=None, stage=None, message="", **kw) -> RolloutEvent:
    return RolloutEvent(1796100000.0, "r1", kind, node, stage, message, **kw)


def test_flags_win_over_the_rollout_table():
    cfg = ClusterConfig(None, rollout=RolloutConfig(hook=("upgrade", "{node}"), max_unavailable=2, ramp=5.0))
    s = settings_from(args(), cfg)
    assert s.hook == ("upgrade", "{node}") and s.max_unavailable == 2 and s.ramp == 5.0
    s = settings_from(args("--hook", "ssh {host} 'sudo up.sh'", "--max-unavailable", "1", "--ramp", "0"), cfg)
    assert s.hook == ("ssh", "{host}", "sudo up.sh") and s.max_unavailable == 1 and s.ramp == 0.0


def test_bad_hook_and_canary_are_one_line():
    with pytest.raises(ValueError, match=r"the hook names \{nod\}: known fields are"):
        settings_from(args("--hook", "up {nod}"), ClusterConfig(None))
    with pytest.raises(ValueError, match="canary clip /nonexistent.wav: no such file"):
        settings_from(args("--hook", "up", "--canary", "/nonexistent.wav"), ClusterConfig(None))


class NoSource:
    closed = False

    async def close(self):
        self.closed = True


@pytest.mark.parametrize("argv, line", [
    (("--resume", "node-1"), "--resume takes no NODE: it acts on the rollout in the state file"),
    (("--from", "hook"), "--from needs --resume (it redoes the stopped node from that stage)"),
    (("--resume", "--from", "reboot"), "--from must be one of drain, wait, hook, health, canary, ready, got 'reboot'"),
    (("--resume", "--abort"), "--resume and --abort cannot go together"),
])
def test_json_ends_with_an_end_event_even_on_bad_input(capsys, line, argv):
    src = NoSource()
    code = asyncio.run(rollout(args(*argv, "--json"), ClusterConfig(None), [], src))
    out, err = capsys.readouterr()
    assert code == 2 and src.closed
    assert err == f"asrtop: {line}\n"
    assert [json.loads(x) for x in out.splitlines()] == [
        {"at": pytest.approx(json.loads(out)["at"]), "rollout": "", "kind": "end", "message": line, "exit_code": 2}]


def test_pipe_gets_one_stamped_line_per_event_and_no_end_line():
    out = io.StringIO()
    o = Output(out, as_json=False)
    for e in (ev("start", "n1", "wait", "wait until empty"),
              ev("progress", "n1", "wait", "3 in flight, waited 0.0 s", in_flight=3),
              ev("ok", "n1", "wait", "ok: empty after 2.0 s"), ev("end", message="done", exit_code=0)):
        o.event(e)
    lines = [ln.split(" ", 1)[1] for ln in out.getvalue().splitlines()]
    assert lines == ["n1 wait: wait until empty", "n1 wait: 3 in flight, waited 0.0 s", "n1 wait: ok: empty after 2.0 s"]
    assert "\r" not in out.getvalue()


def test_terminal_keeps_a_live_line_under_the_lines():
    out = Tty()
    o = Output(out, as_json=False)
    o.event(ev("start", "n1", "wait", "wait until empty"))
    o.event(ev("progress", "n1", "wait", "", in_flight=4, eta_seconds=8.0, oldest_seconds=3.0))
    assert out.getvalue().endswith("\r\x1b[Kn1 wait: 4 in flight, oldest 3.0 s, waited 0.0 s, about 8.0 s left")
    o.event(ev("ok", "n1", "wait", "ok: empty after 2.0 s"))
    o.event(ev("start", "n1", "hook", "run the hook"))
    text = out.getvalue()
    assert text.count("n1 wait: ok: empty after 2.0 s\n") == 1  # printed once, above the live line
    assert text.endswith("\r\x1b[Kn1 hook: run the hook, 0.0 s")


def test_json_is_one_event_per_line():
    out = io.StringIO()
    o = Output(out, as_json=True)
    o.event(ev("progress", "n1", "wait", "2 in flight", in_flight=2, eta_seconds=1.5))
    o.notice("SIGINT (Ctrl+C): stopping after the stage in progress is recorded")
    first, second = [json.loads(x) for x in out.getvalue().splitlines()]
    assert first == {"at": 1796100000.0, "rollout": "r1", "kind": "progress", "node": "n1", "stage": "wait",
                     "message": "2 in flight", "in_flight": 2, "eta_seconds": 1.5}
    assert second["kind"] == "info" and second["message"].startswith("SIGINT (Ctrl+C): stopping")


def test_help_names_the_exit_codes_and_the_hook_fields(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["rollout", "--help"])
    text = capsys.readouterr().out
    assert "8 stopped at a" in text and "{node} {server} {address} {host} {agent}" in text
    assert "asrtop rollout --resume --from hook" in text


class SignalDuringAChange:
    """An engine whose run gets one SIGINT while the Controller holds signals around a change."""

    def __init__(self):
        self.ctl = type("Ctl", (), {"redeliver_signals": True})()
        self.stops: list[str] = []

    def request_stop(self, reason: str) -> None:
        self.stops.append(reason)

    async def run(self, on_event, from_stage):
        from asrtop.control.rollout import RolloutResult
        from asrtop.control.signals import SignalHold

        with SignalHold(self.ctl.redeliver_signals):  # as Controller.apply does while it sends
            signal.raise_signal(signal.SIGINT)
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)  # a second (re-delivered) signal would cancel the run here
        return RolloutResult(130, f"rollout r1 interrupted by {self.stops[0]}")


def test_one_ctrl_c_during_a_change_is_one_stop_not_two(capsys):
    engine = SignalDuringAChange()
    code = asyncio.run(_run(engine, Output(io.StringIO(), as_json=False), None))
    assert code == 130 and engine.stops == ["SIGINT (Ctrl+C)"]
    assert capsys.readouterr().err == "asrtop: rollout r1 interrupted by SIGINT (Ctrl+C)\n"  # not "stopped at once"
