"""The agent's in-path proxy in front of the simulated FunASR node: nothing lost, counts exact."""

from __future__ import annotations

import asyncio

import httpx

from support.netutil import free_port
from support.agent_proc import agent, simnode, wait_status, wav_bytes

BOUNDARY = "asrtopboundary7MA4YWxk"


def multipart(wav: bytes) -> bytes:
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode()
    return head + wav + f"\r\n--{BOUNDARY}--\r\n".encode()


async def post_all(url: str, bodies: list[bytes]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        return await asyncio.gather(*(
            client.post(url + "/asr", content=b,
                        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
            for b in bodies))


def test_100_concurrent_multi_megabyte_uploads_are_counted_exactly(tmp_path):
    # five distinct ~3 MB WAVs (different lengths -> different audio durations), 100 requests at once
    variants = [multipart(wav_bytes(3_000_000 + 64_000 * i)) for i in range(5)]
    bodies = [variants[i % 5] for i in range(100)]
    with simnode(tmp_path, slots=100, queue=100, rtf=0.001) as node, \
            agent(tmp_path, node.url, "--gpu", "none", "--interval", "200ms", proxy=True) as ag:
        responses = asyncio.run(post_all(ag.proxy_url, bodies))
        assert [r.status_code for r in responses] == [200] * 100
        durations = [r.json()["duration"] for r in responses]
        assert sorted(set(durations)) == [round((3_000_000 + 64_000 * i) / 32000, 3) for i in range(5)]
        sim = httpx.get(node.url + "/_sim/stats", timeout=5).json()
        assert sim["received"] == 100 and sim["by_status"] == {"200": 100}
        body = wait_status(ag.url, lambda b: (b["asr"]["requests"] or {}).get("total") == 100
                           and b["asr"]["requests"]["in_flight"] == 0)
        req = body["asr"]["requests"]
        assert body["asr"]["in_flight_source"] == "proxy"
        assert req["by_class"] == {"2xx": 100}
        assert req["bytes_received_total"] == sum(len(b) for b in bodies)
        assert req["bytes_sent_total"] == sum(len(r.content) for r in responses)
        assert abs(req["audio_seconds_total"] - sum(durations)) < 1e-6
        assert req["latency_p50_seconds"] is not None and req["latency_sum_seconds"] > 0


def test_proxy_passes_any_method_path_and_streams_chunked_uploads(tmp_path):
    wav = wav_bytes(200_000)

    def chunks():
        body = multipart(wav)
        for i in range(0, len(body), 10_000):
            yield body[i:i + 10_000]

    with simnode(tmp_path) as node, agent(tmp_path, node.url, "--gpu", "none", "--interval", "200ms",
                                          proxy=True) as ag:
        p = ag.proxy_url
        with httpx.Client(timeout=30) as c:
            direct = c.get(node.url + "/v1/models").json()
            assert c.get(p + "/v1/models").json() == direct
            assert c.get(p + "/nope?x=1").status_code == 404
            assert c.request("DELETE", p + "/asr").status_code == 405
            chunked = c.post(p + "/asr", content=chunks(),
                             headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
            assert chunked.status_code == 200 and chunked.json()["duration"] == round(100_000 / 16000, 3)
            bad = c.post(p + "/asr", files={"file": ("x.wav", b"not audio")})
            assert bad.status_code == 400
        body = wait_status(ag.url, lambda b: (b["asr"]["requests"] or {}).get("total") == 5)
        assert body["asr"]["requests"]["by_class"] == {"2xx": 2, "4xx": 3}
        assert body["asr"]["requests"]["audio_seconds_total"] == round(100_000 / 16000, 3)


def test_proxy_answers_502_when_the_service_is_gone(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    with agent(tmp_path, dead, "--gpu", "none", "--interval", "200ms", proxy=True) as ag:
        r = httpx.post(ag.proxy_url + "/asr", content=b"x" * 1000, timeout=30)
        assert r.status_code == 502 and "unreachable" in r.text
        body = wait_status(ag.url, lambda b: (b["asr"]["requests"] or {}).get("total") == 1)
        assert body["asr"]["requests"]["by_class"] == {"5xx": 1} and body["asr"]["up"] is False


CONTRACT_METRICS = {  # the names (and label sets) the Prometheus source reads; agents/README.md documents them
    "asr_node_info": {"node", "agent_version", "gpu_source"}, "asr_host_cpu_ratio": set(), "asr_host_load1": set(),
    "asr_host_memory_used_bytes": set(), "asr_host_memory_total_bytes": set(),
    "asr_gpu_info": {"gpu", "uuid", "name"}, "asr_gpu_utilization_ratio": {"gpu", "uuid"},
    "asr_gpu_memory_used_bytes": {"gpu", "uuid"}, "asr_gpu_memory_total_bytes": {"gpu", "uuid"},
    "asr_gpu_temperature_celsius": {"gpu", "uuid"}, "asr_gpu_power_watts": {"gpu", "uuid"},
    "asr_gpu_power_limit_watts": {"gpu", "uuid"}, "asr_gpu_process_memory_bytes": {"gpu", "uuid", "pid", "process"},
    "asr_service_up": set(), "asr_service_probe_latency_seconds": set(), "asr_service_process_cpu_ratio": set(),
    "asr_service_process_resident_memory_bytes": set(), "asr_service_in_flight_requests": {"source"},
    "asr_requests_total": {"class"}, "asr_request_duration_seconds_bucket": {"le"},
    "asr_request_duration_seconds_sum": set(), "asr_request_duration_seconds_count": set(),
    "asr_request_received_bytes_total": set(), "asr_response_sent_bytes_total": set(),
    "asr_audio_seconds_total": set(), "asr_model_info": {"sha256"}, "asr_model_dir_info": {"path", "sha256"},
    "asr_model_files": set(), "asr_model_bytes": set(), "asr_model_state": {"state"},
    "asr_agent_collect_duration_seconds": {"collector"}, "asr_agent_collect_errors_total": {"collector"},
    "asr_agent_last_collect_timestamp_seconds": set(),
}


def test_every_contract_metric_is_exposed_with_its_labels(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    model = tmp_path / "model"
    model.mkdir()
    (model / "model.pt").write_bytes(b"weights")
    with simnode(tmp_path) as node, agent(tmp_path, node.url, "--gpu", "simulated", "--model-dir", str(model),
                                          "--interval", "200ms", proxy=True) as ag:
        r = httpx.post(ag.proxy_url + "/asr", files={"file": ("a.wav", wav_bytes(32_000))}, timeout=30)
        assert r.status_code == 200
        wait_status(ag.url, lambda b: (b["asr"]["requests"] or {}).get("total") == 1 and b["model"]["state"] == "ok"
                    and b["asr"]["process_cpu_ratio"] is not None and b["gpus"][0]["processes"])
        text = httpx.get(ag.url + "/metrics", timeout=5).text
    samples: dict[str, set] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            samples.setdefault(s.name, set(s.labels))
    missing = sorted(set(CONTRACT_METRICS) - set(samples))
    assert not missing
    wrong = {n: samples[n] for n, labels in CONTRACT_METRICS.items() if samples[n] != labels}
    assert not wrong
