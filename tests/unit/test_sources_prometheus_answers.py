"""The per-round answers of the Prometheus source (issue 17): last samples of a range query, read without
decoding the whole answer, equal to decoding it as JSON; the request counters folded per instance."""

from __future__ import annotations

import json
import math

import pytest

from asrtop.sources.prometheus_build import REQUESTS_5XX, REQUESTS_SUM
from asrtop.sources.prometheus_queries import REQUESTS_COUNT, PrometheusError, fold_requests, group_latest


def matrix_body(series: list[tuple[dict, list[tuple[float, str]]]]) -> bytes:
    """A matrix answer as Prometheus writes it: no whitespace, labels sorted, UTF-8, values as strings."""
    result = [{"metric": dict(sorted(labels.items())), "values": [[t, v] for t, v in values]}
              for labels, values in series]
    return json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}},
                      separators=(",", ":"), ensure_ascii=False).encode()


def decoded(body: bytes) -> tuple[dict, dict]:
    """What group_latest must give, from json.loads: each series' last sample, grouped; each instance's last time."""
    into: dict = {}
    stamps: dict = {}
    for r in json.loads(body)["data"]["result"]:
        labels, (t, v) = r["metric"], r["values"][-1]
        v = float(v)
        into.setdefault(labels["instance"], {}).setdefault(labels["__name__"], []).append(
            (labels, v if math.isfinite(v) else None))
        stamps[labels["instance"]] = max(stamps.get(labels["instance"], 0.0), t)
    return into, stamps


FLEET = [
    ({"__name__": "asr_host_cpu_ratio", "instance": "h:1", "job": "asr"}, [(10.5, "0.25"), (12.5, "0.5")]),
    ({"__name__": "asr_gpu_utilization_ratio", "gpu": "0", "instance": "h:1", "job": "asr", "uuid": "GPU-1"},
     [(12.5, "NaN")]),
    ({"__name__": "asr_requests_total", "class": "2xx", "instance": "h:1", "job": "asr"}, [(12.5, "40")]),
    ({"__name__": "asr_requests_total", "class": "5xx", "instance": "h:1", "job": "asr"}, [(12.5, "2")]),
    ({"__name__": "asr_host_cpu_ratio", "instance": "h:2", "job": "asr"}, [(11.0, "1e-05")]),
    ({"__name__": "asr_host_cpu_ratio", "instance": "h:2", "job": "asr"}, [(9.0, "+Inf"), (11.0, "3")]),
]


def test_last_samples_equal_decoding_the_answer_as_json():
    body = matrix_body(FLEET)
    into, stamps, cache = {}, {}, {}
    assert group_latest("u", 200, body, "q", into, stamps, cache) == len(FLEET)
    assert (into, stamps) == decoded(body)
    assert into["h:1"]["asr_gpu_utilization_ratio"][0][1] is None  # NaN: unavailable, not a number
    assert stamps == {"h:1": 12.5, "h:2": 11.0}
    assert len(cache) == 5  # read by the pattern, each label set decoded once (two series share one here)
    again: dict = {}
    group_latest("u", 200, body, "q", again, {}, cache)  # the next round: the same label dicts, not copies
    assert again["h:1"]["asr_host_cpu_ratio"][0][0] is into["h:1"]["asr_host_cpu_ratio"][0][0]


@pytest.mark.parametrize("value", ['a}b', 'say "hi"', 'back\\slash', 'Ünïcode <&>', '},"values":[[1,"2"]]}'])
def test_label_values_the_pattern_cannot_read_are_decoded_as_json(value):
    series = [*FLEET, ({"__name__": "asr_gpu_info", "instance": "h:3", "job": "asr", "name": value}, [(5.0, "1")])]
    body = matrix_body(series)
    into, stamps = {}, {}
    assert group_latest("u", 200, body, "q", into, stamps, {}) == len(series)
    assert (into, stamps) == decoded(body)
    assert into["h:3"]["asr_gpu_info"][0][0]["name"] == value


def test_an_error_answer_is_one_line():
    body = b'{"status":"error","errorType":"bad_data","error":"parse error at char 3"}'
    with pytest.raises(PrometheusError, match="parse error at char 3") as e:
        group_latest("http://p", 400, body, "query 'x'", {}, {}, {})
    assert "\n" not in str(e.value)
    with pytest.raises(PrometheusError, match="did not return a matrix"):
        group_latest("http://p", 200, b'{"status":"success","data":{"resultType":"vector","result":[]}}', "q", {}, {},
                     {})


def test_request_counters_are_folded_into_a_total_and_the_5xx_count():
    into: dict = {}
    group_latest("u", 200, matrix_body(FLEET), "q", into, {}, {})
    into["h:2"]["asr_requests_total"] = [({"class": "2xx", "instance": "h:2"}, 7.0)]  # never a 5xx
    fold_requests(into)
    assert "asr_requests_total" not in into["h:1"]
    assert into["h:1"][REQUESTS_SUM][0][1] == 42.0 and [v for _, v in into["h:1"][REQUESTS_5XX]] == [2.0]
    assert into["h:2"][REQUESTS_SUM][0][1] == 7.0 and REQUESTS_5XX not in into["h:2"]


def test_the_requests_answered_are_the_latency_histograms_count_where_it_came():
    """The per-round answer carries the count and only the 5xx class: the count is the total, not that class."""
    into = {"h:1": {REQUESTS_COUNT: [({"instance": "h:1"}, 1207.0)],
                    "asr_requests_total": [({"class": "5xx", "instance": "h:1"}, 4.0)]},
            "h:2": {REQUESTS_COUNT: [({"instance": "h:2"}, 9.0)]}}  # never a 5xx
    fold_requests(into)
    assert REQUESTS_COUNT not in into["h:1"] and "asr_requests_total" not in into["h:1"]
    assert into["h:1"][REQUESTS_SUM][0][1] == 1207.0 and [v for _, v in into["h:1"][REQUESTS_5XX]] == [4.0]
    assert into["h:2"][REQUESTS_SUM][0][1] == 9.0 and REQUESTS_5XX not in into["h:2"]
