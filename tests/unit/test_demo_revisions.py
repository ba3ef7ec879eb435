"""The demo's upgrade path without processes: revisions on disk, /_sim/upgrade, broken revisions, the hook's input."""

from __future__ import annotations

import asyncio
import hashlib

import httpx
import pytest
from aiohttp.test_utils import TestServer

from asrtop.demo import upgrade
from asrtop.demo.audio import speech_like_wav
from asrtop.demo.revisions import ensure_model_dir, install_revision, revision_in_dir
from asrtop.demo.simnode import NodeSettings, SimNode

CLIP = speech_like_wav(3.0, seed=7)


def digest(path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(path.iterdir()))).hexdigest()


def test_install_revision_swaps_every_file_and_leaves_no_staging(tmp_path):
    ensure_model_dir(tmp_path / "m", "Fun-ASR-Nano-2511")
    (tmp_path / "m" / "stale.bin").write_bytes(b"old revision only")
    install_revision(tmp_path / "m", "Fun-ASR-Nano-2512")
    ensure_model_dir(tmp_path / "ref", "Fun-ASR-Nano-2512")
    assert digest(tmp_path / "m") == digest(tmp_path / "ref")  # what the agent hashes: REV's files, no others
    assert revision_in_dir(tmp_path / "m") == "Fun-ASR-Nano-2512"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "ref"]


async def _serve(node: SimNode):
    server = TestServer(node.app(), host="127.0.0.1")
    await server.start_server()
    return server, httpx.AsyncClient(base_url=str(server.make_url("")), timeout=30)


async def test_sim_upgrade_installs_then_asks_for_the_restart(tmp_path):
    node = SimNode(NodeSettings(model_dir=tmp_path / "m", model_name="Fun-ASR-Nano-2511"))
    server, c = await _serve(node)
    try:
        for bad in ({"model": ""}, {"model": "../x"}, {"model": 3}, ["Fun-ASR-Nano-2512"]):
            r = await c.post("/_sim/upgrade", json=bad)
            assert r.status_code == 400 and "revision" in r.json()["error"]
        assert revision_in_dir(tmp_path / "m") == "Fun-ASR-Nano-2511" and node.upgrade_to is None
        r = await c.post("/_sim/upgrade", json={"model": "Fun-ASR-Nano-2512"})
        assert r.json() == {"upgrading": "Fun-ASR-Nano-2512", "from": "Fun-ASR-Nano-2511", "pid": r.json()["pid"]}
        assert revision_in_dir(tmp_path / "m") == "Fun-ASR-Nano-2512"  # files swapped before the restart
        assert (await c.post("/_sim/upgrade", json={"model": "x"})).status_code == 409
        await asyncio.wait_for(node.restart.wait(), 2)  # _serve closes the listener, main() re-executes
        assert node.upgrade_to == "Fun-ASR-Nano-2512"
    finally:
        await c.aclose()
        await server.close()


async def _text_and_time(model: str, rtf: float = 0.01) -> tuple[str, float]:
    node = SimNode(NodeSettings(model_name=model, rtf=rtf))
    server, c = await _serve(node)
    try:
        body = (await c.post("/asr", files={"file": ("c.wav", CLIP, "audio/wav")})).json()
        return body["text"], body["processing_time"]
    finally:
        await c.aclose()
        await server.close()


async def test_broken_revisions_fail_the_canary_checks_and_normal_ones_agree():
    good, t_good = await _text_and_time("Fun-ASR-Nano-2512")
    assert (await _text_and_time("Fun-ASR-Nano-2511"))[0] == good  # the text depends on the audio only
    bad, _ = await _text_and_time("Fun-ASR-Nano-2512-badcanary")
    assert bad and bad != good and set(bad.split()) <= set(good.split())  # words dropped
    _, t_slow = await _text_and_time("Fun-ASR-Nano-2512-slow")
    assert t_slow >= 3.0 * 0.01 * 30 * 0.95 > t_good  # 30x the node's rtf on a 3 s clip


@pytest.mark.parametrize("address, why", [
    ("10.0.0.5:8080", "only talks to simulated nodes on this machine"),
    ("example.com:80", "only talks to simulated nodes on this machine"),
    ("127.0.0.1", "expected HOST:PORT"),
    ("127.0.0.1:99999", "expected HOST:PORT"),
])
def test_hook_refuses_other_machines_in_one_line(address, why, capsys):
    assert upgrade.main([address, "--to", "Fun-ASR-Nano-2512"]) == 2
    err = capsys.readouterr().err
    assert why in err and err.count("\n") == 1


def test_hook_bad_revision_and_no_node(capsys):
    assert upgrade.main(["127.0.0.1:9", "--to", "a b"]) == 2
    assert "revision" in capsys.readouterr().err
    assert upgrade.main(["127.0.0.1:9", "--to", "Fun-ASR-Nano-2512", "--timeout", "1"]) == 1
    err = capsys.readouterr().err
    assert err == "asrtop.demo.upgrade: no simulated node answers /health at 127.0.0.1:9\n"


def test_hook_help_says_demo_only(capsys):
    with pytest.raises(SystemExit):
        upgrade.main(["--help"])
    out = capsys.readouterr().out
    assert "DEMO ONLY" in out and "--to REVISION" in out and "--timeout S" in out


def test_loopback_forms_accepted():
    assert upgrade.node_url("127.0.0.1:80") == "http://127.0.0.1:80"
    assert upgrade.node_url("[::1]:80") == "http://[::1]:80"
    assert upgrade.node_url("localhost:80") == "http://localhost:80"


def test_hook_template_survives_an_interpreter_path_with_spaces(monkeypatch):
    from asrtop.config import split_hook

    monkeypatch.setattr(upgrade.sys, "executable", "/opt/my python/bin/python3")
    assert split_hook(upgrade.hook_template("Fun-ASR-Nano-2512")) == (
        "/opt/my python/bin/python3", "-m", "asrtop.demo.upgrade", "{address}", "--to", "Fun-ASR-Nano-2512")
