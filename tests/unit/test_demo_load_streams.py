"""The load generator's streaming side without processes: the mixes, the counts' wording, the WS config."""

from __future__ import annotations

import json
import subprocess

import pytest

from asrtop.demo import load as load_mod
from asrtop.demo.haproxycfg import ServerSpec, find_haproxy, render_config
from asrtop.demo.load import LoadGenerator, LoadReport
from asrtop.demo.loadws import StreamCounts, StreamTally, check_ws_loopback, parse_length, parse_mode_mix, parse_stream_mix


def test_stream_mix_reads_percent_and_length():
    assert parse_stream_mix("20:5s,60:30s,15:2m,5:20m") == ((20, 5), (60, 30), (15, 120), (5, 1200))
    assert parse_stream_mix("90s") == ((100, 90),)  # one length: every stream
    assert parse_stream_mix("50:1.5m, 50:1h") == ((50, 90), (50, 3600))
    assert parse_mode_mix("50:2pass,30:online,20:offline") == ((50, "2pass"), (30, "online"), (20, "offline"))
    assert parse_length("30") == 30.0


@pytest.mark.parametrize("text, says", [
    ("20:5x,80:30s", "--stream-mix: '5x' is not a length (5s, 2m, 1h); e.g. 20:5s,60:30s,15:2m,5:20m"),
    ("20:5s,60:30s", "--stream-mix: the percentages add up to 80, not 100"),
    ("abc:5s", "--stream-mix: 'abc:5s' is not percent:value (percent 1-100)"),
    ("0:5s,100:1s", "--stream-mix: '0:5s' is not percent:value"),
    ("100:0s", "'0s' is not a length"),
    ("", "--stream-mix: empty"),
])
def test_bad_stream_mix_is_one_clear_line(text, says):
    with pytest.raises(ValueError) as e:
        parse_stream_mix(text)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_bad_mode_is_one_clear_line():
    with pytest.raises(ValueError, match=r"^--stream-modes: 'streaming' is not a mode \(online, 2pass, offline\)"):
        parse_mode_mix("50:2pass,50:streaming")


@pytest.mark.parametrize("url", ["ws://10.0.0.5:80", "wss://127.0.0.1:1", "http://127.0.0.1:1", "ws://example.com"])
def test_streams_go_to_loopback_only(url):
    with pytest.raises(ValueError, match="ws://127.0.0.1 only"):
        check_ws_loopback(url)


def test_streams_must_be_bounded_and_need_a_ws_url(tmp_path):
    with pytest.raises(ValueError, match="stream count: load always stops by itself"):
        LoadGenerator("http://127.0.0.1:1", 0, ws_url="ws://127.0.0.1:1", streams=2, audio_dir=tmp_path)
    with pytest.raises(ValueError, match="streams need --ws-url"):
        LoadGenerator("http://127.0.0.1:1", 0, streams=2, stream_count=2, audio_dir=tmp_path)


def test_load_cli_bad_mix_one_line_no_audio_made(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    code = load_mod.main(["--concurrency", "0", "--ws-url", "ws://127.0.0.1:1", "--streams", "2",
                          "--stream-count", "2", "--stream-mix", "20:5s,70:1m"])
    err = capsys.readouterr().err
    assert code == 2 and err == "load: --stream-mix: the percentages add up to 90, not 100; e.g. 20:5s,60:30s,15:2m,5:20m\n"
    assert not any(tmp_path.rglob("*.wav"))  # refused before any audio was generated


def test_counts_are_consistent_snapshots():
    c = StreamCounts()
    c.add(started=1, open=1)
    c.add(started=1, open=1)
    c.add(results=3)
    c.add(reason="closed 1011 node stopping", open=-1, cut_by_server=1)
    t = c.snapshot()
    assert (t.started, t.open, t.cut_by_server, t.results, t.ended_without_final) == (2, 1, 1, 3, 1)
    c.add(open=-1, finished=1)
    assert c.snapshot().open == 0 and t.open == 1  # a snapshot does not move


def test_streams_line_says_who_cut_and_what_ended_without_a_final():
    ok = StreamTally(started=5, finished=3, cut_by_stop=2, results=40)
    assert ok.line() == ("streams: 5 started, 3 finished, 2 cut (0 by the server/balancer, 2 by the load's stop), "
                         "40 results; every stream that ended on its own got its final result")
    bad = StreamTally(started=4, open=1, finished=1, cut_by_server=1, no_final=1, refused=2, results=9,
                      reasons={"closed 1011 bye": 1, "handshake http 503": 2})
    assert bad.line() == ("streams: 4 started, 1 finished, 1 cut (1 by the server/balancer, 0 by the load's stop), "
                          "1 without a final result in time, 1 open, 2 refused, 9 results; 2 stream(s) ended without "
                          "their final result (closed 1011 bye: 1; handshake http 503: 2)")
    report = LoadReport("http://127.0.0.1:1", 2, 1.0, (), streams=bad)
    assert report.summary().splitlines()[-1] == bad.line()
    assert json.loads(json.dumps(report.as_dict()))["streams"]["cut"] == {"by_server": 1, "by_stop": 0, "no_final": 1}
    assert "streams" not in LoadReport("http://127.0.0.1:1", 2, 1.0, ()).as_dict()


def test_haproxy_ws_frontend_and_backend():
    servers = [ServerSpec("node-1", 1001, 3, ws_port=2001), ServerSpec("node-2", 1002, 1, backup=True, ws_port=2002)]
    cfg = render_config(servers, 8080, "/tmp/x/admin.sock", 9090, prometheus=False, ws_port=8081)
    ws = cfg[cfg.index("frontend asr_ws"):cfg.index("frontend stats")]
    for line in ("bind 127.0.0.1:8081", "timeout client-fin 30s", "default_backend fun_asr_ws_backend",
                 "backend fun_asr_ws_backend", "timeout tunnel 1h", "option httpchk GET /health",
                 "server node-1 127.0.0.1:2001 weight 3 check port 1001\n",
                 "server node-2 127.0.0.1:2002 weight 1 check port 1002 backup"):
        assert line in ws, line
    assert "asr_ws" not in render_config(servers, 8080, "/s", None, prometheus=False)  # no ws_port: HTTP only
    try:
        binary = find_haproxy()
    except RuntimeError:
        pytest.skip("haproxy not installed")
    check = subprocess.run([binary, "-c", "-q", "-f", "/dev/stdin"], input=cfg, capture_output=True, text=True,
                           timeout=10)
    assert check.returncode == 0, check.stderr


def test_demo_refuses_a_bad_stream_mix_before_starting_anything(capsys):
    import argparse

    from asrtop.demo.run import run_demo

    args = argparse.Namespace(nodes=1, load=0, streams=None, stream_mix="50:5s", headless=True, duration=1.0)
    assert run_demo(args) == 2
    assert capsys.readouterr().err == ("asrtop demo: --stream-mix: the percentages add up to 50, not 100; "
                                       "e.g. 20:5s,60:30s,15:2m,5:20m\n")
    args.stream_mix, args.streams = "5s", -1
    assert run_demo(args) == 2 and capsys.readouterr().err == "asrtop demo: --streams must be >= 0, got -1\n"
