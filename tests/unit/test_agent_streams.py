"""Open streams and their ages: the connection tracker, the proxy's counts, their /v1/status and /metrics."""

from __future__ import annotations

import dataclasses
import json
import socket

import pytest
from prometheus_client.parser import text_string_to_metric_families

from asrtop_agent.collectors.sockets import ProcNetTcp, SockDiag
from asrtop_agent.collectors.streams import ConnectionStreams, ProxyStreams
from asrtop_agent.metrics import render
from asrtop_agent.status import status_dict

from test_agent_render import full_snapshot


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


class Table:
    def __init__(self):
        self.inodes: list[int] = []

    def established(self, port):
        return list(self.inodes)


def test_connections_are_aged_from_first_seen_and_gone_ones_count_closed():
    clock, table = Clock(), Table()
    tracker = ConnectionStreams(10095, table, clock)
    first = tracker.collect()
    assert (first.source, first.open, first.oldest_seconds, first.opened_total) == ("connections", 0, None, 0)
    assert first.ages[-1] == (None, 0) and first.frames_total is None
    table.inodes = [11, 12]
    tracker.collect()
    clock.t += 100
    table.inodes = [11, 12, 13]
    clock.t += 250  # 11 and 12: first seen 350 s ago; 13 first seen now
    snap = tracker.collect()
    assert snap.open == 3 and snap.oldest_seconds == 350.0 and snap.opened_total == 3 and snap.closed_total == 0
    assert dict(snap.ages) == {60.0: 1, 300.0: 1, 600.0: 3, 1800.0: 3, 3600.0: 3, None: 3}
    table.inodes = [13, 14]
    clock.t += 10
    snap = tracker.collect()
    assert snap.open == 2 and snap.oldest_seconds == 10.0 and snap.opened_total == 4 and snap.closed_total == 2


def test_proxy_counts_are_exact_and_ages_come_from_the_clock():
    clock = Clock()
    counts = ProxyStreams(clock)
    a = counts.opened()
    clock.t += 1900
    b = counts.opened()
    counts.frames, counts.audio_seconds = 42, 12.5
    clock.t += 5
    snap = counts.snapshot()
    assert snap.source == "proxy" and snap.open == 2 and snap.oldest_seconds == 1905.0
    assert dict(snap.ages) == {60.0: 1, 300.0: 1, 600.0: 1, 1800.0: 1, 3600.0: 2, None: 2}
    counts.closed(a)
    counts.closed(a)  # closing twice counts once
    snap = counts.snapshot()
    assert (snap.open, snap.opened_total, snap.closed_total, snap.oldest_seconds) == (1, 2, 1, 5.0)
    counts.closed(b)
    snap = counts.snapshot()
    assert snap.open == 0 and snap.oldest_seconds is None and snap.frames_total == 42
    assert snap.audio_seconds_total == 12.5


def _with_streams(streams, probe=("ws", "ws://127.0.0.1:10095/")):
    snap = full_snapshot()
    asr = dataclasses.replace(snap.asr, streams=streams, probe_kind=probe[0], probe_target=probe[1])
    return dataclasses.replace(snap, asr=asr)


def test_status_carries_the_streams_and_probe_objects_of_the_contract():
    clock = Clock()
    counts = ProxyStreams(clock)
    for _ in range(3):
        counts.opened()
    clock.t += 723.5
    counts.opened()
    counts.frames, counts.audio_seconds = 93412, 8123.4
    body = json.loads(json.dumps(status_dict(_with_streams(counts.snapshot()))))
    assert body["schema"] == 1
    assert body["asr"]["probe"] == {"kind": "ws", "target": "ws://127.0.0.1:10095/"}
    assert body["asr"]["streams"] == {
        "source": "proxy", "open": 4, "oldest_seconds": 723.5,
        "ages": [[60, 1], [300, 1], [600, 1], [1800, 4], [3600, 4], [None, 4]],
        "opened_total": 4, "closed_total": 0, "frames_total": 93412, "audio_seconds_total": 8123.4}
    conn = ConnectionStreams(1, Table(), clock).collect()
    body = status_dict(_with_streams(conn))["asr"]["streams"]
    assert "frames_total" not in body and "audio_seconds_total" not in body and body["oldest_seconds"] is None
    plain = status_dict(full_snapshot())["asr"]
    assert "streams" not in plain and plain["probe"]["kind"] == "http"


def _samples(body: bytes) -> dict[str, list]:
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_metrics_render_the_stream_series_by_their_contract_names():
    clock = Clock()
    counts = ProxyStreams(clock)
    counts.closed(counts.opened())
    counts.opened()
    clock.t += 90
    counts.frames, counts.audio_seconds = 7, 1.5
    m = _samples(render(_with_streams(counts.snapshot())))
    assert m["asr_streams_open"] == [({}, 1.0)] and m["asr_stream_oldest_seconds"] == [({}, 90.0)]
    assert m["asr_streams_opened_total"] == [({}, 2.0)] and m["asr_streams_closed_total"] == [({}, 1.0)]
    assert m["asr_stream_frames_total"] == [({}, 7.0)] and m["asr_stream_audio_seconds_total"] == [({}, 1.5)]
    assert [(lab["le"], v) for lab, v in m["asr_streams_by_age"]] == [
        ("60.0", 0), ("300.0", 1), ("600.0", 1), ("1800.0", 1), ("3600.0", 1), ("+Inf", 1)]
    conn = _samples(render(_with_streams(ConnectionStreams(1, Table(), clock).collect())))
    assert conn["asr_streams_open"] == [({}, 0.0)] and "asr_stream_oldest_seconds" not in conn  # absent, not 0
    assert "asr_stream_frames_total" not in conn
    assert not any(name.startswith("asr_stream") for name in _samples(render(full_snapshot())))


@pytest.mark.parametrize("table_cls", [SockDiag, ProcNetTcp])
def test_established_lists_server_side_inodes_on_the_real_kernel(table_cls):
    table = table_cls()
    srv = socket.socket(socket.AF_INET6)
    srv.bind(("::", 0))
    srv.listen()
    port = srv.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    accepted = [srv.accept()[0] for _ in clients]
    try:
        inodes = table.established(port)
        assert sorted(inodes) == sorted(_inode(s) for s in accepted)  # the server side only
        clients[0].close()
        accepted[0].close()
        assert sorted(table.established(port)) == sorted(_inode(s) for s in accepted[1:])
    finally:
        for s in clients + accepted + [srv]:
            s.close()


def _inode(sock: socket.socket) -> int:
    import os

    return os.fstat(sock.fileno()).st_ino
