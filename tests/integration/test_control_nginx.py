"""Control + CLI against a real nginx (Debian 1.22), alone and next to a real HAProxy, on 127.0.0.1."""

from __future__ import annotations

import httpx
import pytest

from asrtop.balancers.factory import build_balancers
from asrtop.control import Action, Controller
from support.balancers import nginx_upstream_block, start_backends, start_haproxy, start_nginx, wait_until
from support.control_cluster import (
    DRAIN_BIT,
    admin_weight,
    config,
    haproxy_entry,
    nginx_entry,
    node_entry,
    raw_servers,
    run_cli,
    write_config,
)

NODES = ("n1", "n2", "n3")


def answered_by(url: str, count: int = 12) -> set[str]:
    """The backends that answered `count` requests. A reload's old workers close their idle kept-alive
    connections as they leave, so a request sent on one just then gets no answer (as a browser would, it is
    sent again, on a new connection)."""
    answered = set()
    with httpx.Client(timeout=10) as c:
        for _ in range(count):
            try:
                answered.add(c.get(url).text)
            except httpx.RemoteProtocolError:
                answered.add(c.get(url).text)
    return answered


@pytest.fixture
def ngx_cluster(tmp_path, nginx_bin):
    with start_backends(NODES) as be:
        block = nginx_upstream_block("fun_asr_backend", be.specs(n1={"weight": 3, "extra": "max_fails=2 fail_timeout=30s"}))
        with start_nginx(nginx_bin, tmp_path, block) as ngx:
            nodes = [node_entry(n, f"127.0.0.1:{be.ports[n]}") for n in NODES]
            path = write_config(tmp_path, [nginx_entry("ngx", ngx)], nodes)
            yield be, ngx, path


def test_nginx_drain_weight_and_ready_through_the_cli(ngx_cluster):
    be, ngx, path = ngx_cluster
    p = run_cli(path, "drain", "n1", "--dry-run")
    assert p.returncode == 0
    assert p.stdout.splitlines()[1] == "  ngx: state ready -> drain (nginx: `down` + reload)"
    assert "down" not in ngx.upstream_conf.read_text()
    p = run_cli(path, "drain", "n1")
    assert p.returncode == 0 and p.stdout.strip() == "drain n1: done on ngx", p.stderr
    text = ngx.upstream_conf.read_text()
    assert f"server 127.0.0.1:{be.ports['n1']} weight=3 max_fails=2 fail_timeout=30s down;" in text
    assert wait_until(lambda: "n1" not in answered_by(ngx.url("/")))  # reload is asynchronous
    p = run_cli(path, "weight", "n2", "5")
    assert p.returncode == 0, p.stderr
    assert f"server 127.0.0.1:{be.ports['n2']} weight=5;" in ngx.upstream_conf.read_text()
    p = run_cli(path, "ready", "n1")
    assert p.returncode == 0, p.stderr
    assert wait_until(lambda: "n1" in answered_by(ngx.url("/"), 30))


@pytest.mark.parametrize("weight,needle", [
    ("0", "weight 0 is out of range for ngx (nginx accepts 1-"),
    ("-1", "weight -1 is out of range for ngx"),
    ("abc", "weight must be a whole number"),
])
def test_nginx_bad_weight_changes_nothing(ngx_cluster, weight, needle):
    _, ngx, path = ngx_cluster
    before = ngx.upstream_conf.read_bytes()
    p = run_cli(path, "weight", "n2", weight)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and needle in p.stderr
    assert ngx.upstream_conf.read_bytes() == before


def test_nginx_failing_config_test_is_rejected_and_restored(ngx_cluster, tmp_path):
    be, ngx, _ = ngx_cluster
    before = ngx.upstream_conf.read_bytes()
    bad = write_config(tmp_path, [nginx_entry("ngx", ngx).replace('test_command = [', 'test_command = ["false", ')],
                       [node_entry(n, f"127.0.0.1:{be.ports[n]}") for n in NODES], name="bad.toml")
    p = run_cli(bad, "drain", "n2")
    assert p.returncode == 7 and len(p.stderr.splitlines()) == 1 and "restored" in p.stderr
    assert ngx.upstream_conf.read_bytes() == before


async def test_haproxy_and_nginx_together(tmp_path, nginx_bin, wheel_haproxy_bin):
    with start_backends(NODES) as be, start_haproxy(wheel_haproxy_bin, tmp_path, be.specs()) as hx, \
            start_nginx(nginx_bin, tmp_path, nginx_upstream_block("fun_asr_backend", be.specs())) as ngx:
        nodes = [node_entry(n, f"127.0.0.1:{be.ports[n]}") for n in NODES]
        path = write_config(tmp_path, [haproxy_entry("hx", hx.socket), nginx_entry("ngx", ngx)], nodes)
        cfg = config(path)
        ctl = Controller(cfg, build_balancers(cfg))
        res = await ctl.apply(Action("drain", "n3"))
        assert res.outcome == "done", res.message
        assert int(raw_servers(hx)["n3"]["srv_admin_state"]) & DRAIN_BIT
        assert f"127.0.0.1:{be.ports['n3']} down;" in ngx.upstream_conf.read_text()
        before = admin_weight(hx)
        res = await ctl.apply(Action("weight", "n1", 300))  # fine for nginx, too big for HAProxy
        assert res.outcome == "bad-input" and "out of range for hx (haproxy accepts 0-256)" in res.message
        res = await ctl.apply(Action("weight", "n1", 0))  # fine for HAProxy, invalid for nginx
        assert res.outcome == "bad-input" and "for ngx" in res.message and "nginx has no weight 0" in res.message
        assert admin_weight(hx) == before
        res = await ctl.apply(Action("weight", "n1", 2))
        assert res.outcome == "done" and [o.after.weight for o in res.balancers] == [2, 2]
