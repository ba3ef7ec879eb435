"""asrtop.sources.plainhttp: the one-shot commands' plain-HTTP client for agents (issue 17: `asrtop status`
without aiohttp). Real loopback servers; every failure worded as the aiohttp poller words it."""

from __future__ import annotations

import asyncio
import json
import select
import socket
import types

import pytest

from asrtop.config import NodeConfig
from asrtop.sources import plainbatch, plainhttp
from asrtop.sources.agents import BRIEF_QUERY, AgentPoller, describe_error
from support.netutil import free_port
from support.sources_synth import SynthNode

BODY = json.dumps(SynthNode("node-0").status_body()).encode()


def answer(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode() + b"\r\n" + body


def chunked(body: bytes, size: int = 500) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size)]
    return b"".join(parts) + b"0\r\n\r\n"


JSON_HEAD = "HTTP/1.1 200 OK\nContent-Type: application/json\n"
ANSWERS = {  # path -> what the server sends back (None: close without a word; "hole": never answer)
    "/good/v1/status": answer(JSON_HEAD + f"Content-Length: {len(BODY)}\n", BODY),
    "/chunked/v1/status": answer(JSON_HEAD + "Transfer-Encoding: chunked\n", chunked(BODY)),
    "/to-close/v1/status": answer(JSON_HEAD + "Connection: close\n", BODY),
    "/h500/v1/status": answer("HTTP/1.1 500 Internal Server Error\nContent-Length: 17\n", b"collector crashed"),
    "/badjson/v1/status": answer(JSON_HEAD + "Content-Length: 22\n", b'{"schema": 1, "node": '),
    "/schema/v1/status": answer(JSON_HEAD + "Content-Length: 14\n", b'{"schema": 99}'),
    "/truncated/v1/status": answer(JSON_HEAD + "Content-Length: 100\n", b'{"a": 1'),
    "/closed/v1/status": None,
    "/hole/v1/status": "hole",
    "/slow/v1/status": "slow",  # the good answer, 0.15 s late
}


@pytest.fixture
async def server():
    async def handle(reader, writer):
        try:
            request = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:  # a client that gave up before asking
            writer.close()
            return
        try:
            what = ANSWERS.get(request.split(b" ")[1].decode().partition("?")[0])  # an agent from before ?view=
            if what == "hole":
                await reader.read()  # until the client gives up
            elif what == "slow":
                await asyncio.sleep(0.15)
                writer.write(ANSWERS["/good/v1/status"])
                await writer.drain()
            elif what is not None:
                writer.write(what)
                await writer.drain()
        finally:
            writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
    srv.close()


async def test_good_answers_by_length_chunked_and_to_the_close(server):
    for path in ("/good", "/chunked", "/to-close"):
        body, code = await plainhttp.get(server + path + "/v1/status", 2.0, {"Accept": "application/json"})
        assert code == 200 and body == BODY, path


async def test_every_failure_worded_as_the_aiohttp_poller_words_it(server):
    names = ["good", "chunked", "h500", "badjson", "schema", "truncated", "closed", "hole"]
    nodes = [NodeConfig(n, agent=f"{server}/{n}") for n in names]
    nodes += [NodeConfig("dead", agent=f"http://127.0.0.1:{free_port()}"),
              NodeConfig("badport", agent="http://127.0.0.1:99999")]
    plain, full = AgentPoller(timeout=0.4, one_shot=True), AgentPoller(timeout=3.0)
    try:
        got = await plain.poll(nodes)
        want = await full.poll([n for n in nodes if n.name != "hole"])  # a timeout is worded before either client
    finally:
        await asyncio.gather(plain.close(), full.close())
    errors = {n: r.error for n, r in got.items()}
    assert errors == {
        "good": None, "chunked": None, "h500": "HTTP 500 from /v1/status", "badjson": errors["badjson"],
        "schema": "unsupported status schema 99 (this asrtop reads schema 1)",
        "truncated": "truncated answer: received 7 of 100 bytes",
        "closed": "closed the connection without answering", "hole": "no answer within 0.4s",
        "dead": errors["dead"], "badport": "bad agent URL: http://127.0.0.1:99999/v1/status?view=brief"}
    assert errors["badjson"].startswith("bad JSON from /v1/status: ")
    assert errors["dead"].startswith("cannot connect to 127.0.0.1:") and errors["dead"].endswith(": connection refused")
    same = ("good", "chunked", "h500", "badjson", "schema", "closed", "dead")
    assert {n: errors[n] for n in same} == {n: want[n].error for n in same}  # aiohttp's, word for word
    assert errors["badport"] == want["badport"].error + BRIEF_QUERY  # the URL it asked: the brief view
    assert want["truncated"].error.startswith("truncated answer: ")  # aiohttp adds its own detail
    assert got["good"].status.node == "node-0" and got["chunked"].status == got["good"].status


async def test_not_http_in_one_line():
    async def ssh(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(ssh, "127.0.0.1", 0)
    poller = AgentPoller(timeout=2.0, one_shot=True)
    try:
        got = await poller.poll([NodeConfig("ssh", agent=f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}")])
    finally:
        srv.close()
        await poller.close()
    assert got["ssh"].error == "bad HTTP answer: not an HTTP answer: b'SSH-2.0-OpenSSH_9.2\\r\\n'"


def test_a_name_that_does_not_resolve_is_worded_as_aiohttps():
    err = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert describe_error(plainhttp.ConnectFailed("agent-7.example", 10860, err), 1.0) == \
        "cannot resolve agent-7.example: name or service not known"


def test_only_http_urls():
    assert plainhttp.split_url("http://[::1]:8080/v1/status?after=now") == ("::1", 8080, "/v1/status?after=now")
    assert plainhttp.split_url("http://agent") == ("agent", 80, "/")
    for bad in ("https://agent/", "http://:80/", "http://agent:http/", "ftp://agent/"):
        with pytest.raises(plainhttp.BadURL):
            plainhttp.split_url(bad)


async def test_one_shot_asks_every_agent_each_with_the_whole_timeout(server):
    """`status` on a big fleet: more agents than slots. The console's shared round budget leaves the last ones
    "not polled"; a one-shot command gives each request the whole timeout when it gets its slot."""
    nodes = [NodeConfig(f"n{i}", agent=f"{server}/slow") for i in range(3)]
    console, one_shot = AgentPoller(timeout=0.3, concurrency=1), AgentPoller(timeout=0.3, concurrency=1, one_shot=True)
    try:
        assert (await console.poll(nodes))["n2"].error.startswith("not polled: the round's 0.3s went to slower agents")
        assert {n: r.error for n, r in (await one_shot.poll(nodes)).items()} == {"n0": None, "n1": None, "n2": None}
    finally:
        await asyncio.gather(console.close(), one_shot.close())


async def test_all_at_once_in_one_thread_same_answers_and_errors_as_one_by_one(server):
    """`status` asks 1,000 agents at once from one thread on one epoll (plainbatch; issue 17: the event loop's
    machinery per connection was most of its CPU): each URL's answer or error is plainhttp.get's, in order, with
    fewer slots than URLs, each exchange with its own timeout, a name resolved first."""
    paths = ["good", "chunked", "to-close", "h500", "truncated", "closed", "hole", "slow", "good"]
    port = server.rsplit(":", 1)[1]
    urls = [f"{server}/{p}/v1/status" for p in paths]
    urls += [f"http://127.0.0.1:{free_port()}/v1/status", "http://127.0.0.1:99999/v1/status",
             f"http://localhost:{port}/good/v1/status", "http://agent.invalid:80/v1/status"]
    headers = {"Accept": "application/json"}
    got = await plainbatch.get_all(urls, 0.4, headers, concurrency=3)
    one_by_one = []
    for url in urls:
        try:
            one_by_one.append(await plainhttp.get(url, 0.4, headers))
        except Exception as e:
            one_by_one.append(e)

    def word(x):
        return (type(x).__name__, describe_error(x, 0.4)) if isinstance(x, BaseException) else x

    assert [word(result) for result, _, _ in got] == [word(x) for x in one_by_one]
    assert got[0][0] == (BODY, 200) and got[6][0].__class__ is TimeoutError and got[7][0] == (BODY, 200)
    assert 0.15 <= got[7][1] < 0.4 and 0.4 <= got[6][1] < 1.0  # the slow one answered late, within its own time


async def test_all_at_once_hands_each_answer_to_then_in_its_thread(server):
    """`then` works out each answer in the exchanges' thread; what it raises is that URL's outcome."""
    def then(body, code):
        if code != 200:
            raise ValueError(f"HTTP {code}")
        return json.loads(body)["node"]

    got = await plainbatch.get_all([f"{server}/good/v1/status", f"{server}/h500/v1/status"], 2.0, then=then)
    assert got[0][0] == "node-0" and str(got[1][0]) == "HTTP 500"


class EpollSpy:
    """An epoll that writes the calls named in `kinds` into `log`: ("register", events), ("modify", events),
    ("unregister",), ("poll", timeout, how many sockets were ready)."""

    def __init__(self, log: list, kinds: tuple[str, ...]):
        self.ep, self.log, self.kinds = select.epoll(), log, kinds

    def _note(self, *entry) -> None:
        if entry[0] in self.kinds:
            self.log.append(entry)

    def register(self, fd, events):
        self._note("register", events)
        self.ep.register(fd, events)

    def modify(self, fd, events):
        self._note("modify", events)
        self.ep.modify(fd, events)

    def unregister(self, fd):
        self._note("unregister")
        self.ep.unregister(fd)

    def poll(self, timeout):
        ready = self.ep.poll(timeout)
        self._note("poll", timeout, len(ready))
        return ready

    def close(self):
        self.ep.close()


async def test_all_at_once_works_answers_out_only_while_no_socket_is_ready(server, monkeypatch):
    """Issue 17 (status at 1,000 loopback agents, answers always ready): `then` interleaved with the socket work
    cost the thread 82-84 ms against 55-62 ms for the same work done apart. So `then` runs only when a poll
    finds no socket ready, or after the last exchange: never between a poll that found sockets ready and
    their work."""
    log: list = []
    monkeypatch.setattr(plainbatch, "select", types.SimpleNamespace(epoll=lambda: EpollSpy(log, ("poll",))))

    def then(body, code):
        log.append(("then",))
        return code

    got = await plainbatch.get_all([f"{server}/good/v1/status"] * 30 + [f"{server}/slow/v1/status"], 2.0,
                                   concurrency=8, then=then)
    assert [result for result, _, _ in got] == [200] * 31
    last_poll = max(i for i, entry in enumerate(log) if entry[0] == "poll")
    for i, entry in enumerate(log[:last_poll]):
        if entry == ("then",):
            before = next(e for e in reversed(log[:i]) if e[0] == "poll")
            assert before[1:] == (0, 0), log  # the poll just before found nothing ready
    # the slow answer came 0.15 s after the others: they were worked out meanwhile, not after it
    assert log.count(("then",)) == 31 and log[last_poll + 1:].count(("then",)) == 1, log


def test_the_usual_agent_url_split_without_urlsplit_as_urlsplit_splits_it():
    """`status` splits 1,000 agent URLs: the usual http://host:port/path by hand (half the cost), anything else
    by urlsplit; both ways alike wherever the short way answers."""
    import random

    rng = random.Random(5)
    urls = ["http://10.0.0.7:9500/v1/status", "http://agent/v1/status?after=now", "http://agent:65536/x",
            "http://Agent:1/x", "http://a:1/p?", "http://a:1/p?x#f", "http://u@a:1/", "http://a:01/x", "http://a:١/x"]
    urls += ["http://" + "".join(rng.choice("ab1.-:/?#@[]Z %\t") for _ in range(rng.randint(0, 12)))
             for _ in range(5000)]

    def by_urlsplit(url):
        try:
            return plainhttp._split_any(url)
        except plainhttp.BadURL:
            return "BadURL"

    short = {u: plainhttp._split_plain(u) for u in urls}
    assert short["http://10.0.0.7:9500/v1/status"] == ("10.0.0.7", 9500, "/v1/status")
    assert sum(v is not None for v in short.values()) > 100  # the short way answered often enough to compare
    assert {u: v for u, v in short.items() if v is not None} == {u: by_urlsplit(u) for u, v in short.items()
                                                                  if v is not None}


async def test_all_at_once_one_epoll_call_per_agent_the_request_sent_with_the_connect(server, monkeypatch):
    """Issue 17 (status at 1,000 agents): where the connection is made at once (loopback, a near agent), the
    request goes out right after connect and the socket is registered once, for the answer only; closing it
    takes it off the epoll (no modify, no unregister: each was a syscall per agent)."""
    calls: list = []
    spy = types.SimpleNamespace(epoll=lambda: EpollSpy(calls, ("register", "modify", "unregister")))
    monkeypatch.setattr(plainbatch, "select", spy)
    got = await plainbatch.get_all([f"{server}/good/v1/status"] * 5, 2.0)
    assert [result for result, _, _ in got] == [(BODY, 200)] * 5
    assert calls == [("register", select.EPOLLIN)] * 5


async def test_all_at_once_a_connection_still_being_made_gets_its_request_when_writable(server, monkeypatch):
    """Where connect has not finished when it returns (a far agent), the first send finds the socket not ready:
    the request goes out when the socket turns writable, and the answer is the same."""
    not_ready = []

    class SlowToConnect(socket.socket):
        def send(self, data, *flags):
            if self.fileno() not in not_ready:
                not_ready.append(self.fileno())
                raise BlockingIOError(11, "not connected yet")
            return super().send(data, *flags)

    monkeypatch.setattr(plainbatch, "socket", types.SimpleNamespace(
        socket=SlowToConnect, SOL_SOCKET=socket.SOL_SOCKET, SO_ERROR=socket.SO_ERROR, AF_INET=socket.AF_INET,
        AF_INET6=socket.AF_INET6, inet_pton=socket.inet_pton))
    got = await plainbatch.get_all([f"{server}/good/v1/status", f"{server}/chunked/v1/status"], 2.0)
    assert [result for result, _, _ in got] == [(BODY, 200)] * 2 and len(not_ready) == 2
