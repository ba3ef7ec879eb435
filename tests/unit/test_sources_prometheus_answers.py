"""The per-round answers of the Prometheus source (issue 17): last samples of a range query, read without
decoding the whole answer, equal to decoding it as JSON; last samples of /federate (Prometheus' text
exposition), those before the round's range set apart; the request counters folded per instance."""

from __future__ import annotations

import json
import math

import pytest

from asrtop.sources.prometheus_build import REQUESTS_5XX, REQUESTS_SUM
from asrtop.sources.prometheus_queries import (REQUESTS_COUNT, PrometheusError, fold_requests, group_federated,
                                               group_latest)


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


def federate_body(series: list[tuple[dict, list[tuple[float, str]]]]) -> bytes:
    """/federate's answer as Prometheus writes it: a TYPE line per metric, each series' last sample and its time in
    ms, label values escaped (backslash, double quote, newline)."""
    def escaped(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    lines, typed = [], set()
    for labels, values in series:
        name = labels["__name__"]
        if name not in typed:
            typed.add(name)
            lines.append(f"# TYPE {name} untyped")
        inner = ",".join(f'{k}="{escaped(v)}"' for k, v in sorted(labels.items()) if k != "__name__")
        t, v = values[-1]
        lines.append(f"{name}{{{inner}}} {v} {round(t * 1000)}")
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("value", ['plain', 'a}b', 'say "hi"', 'back\\slash', 'Ünïcode <&>', 'two\nlines', '} 1 2'])
def test_federated_last_samples_are_grouped_as_a_range_querys_with_the_late_apart(value):
    """What group_latest gives for the series scraped within the round's range, whatever a label value holds;
    the older ones (a scrape late: each series' last sample within Prometheus' lookback) apart, with their times."""
    series = [*FLEET, ({"__name__": "asr_gpu_info", "instance": "h:3", "job": "asr", "name": value}, [(5.0, "1")])]
    body = federate_body(series)
    into, stamps, late, late_stamps, cache = {}, {}, {}, {}, {}
    assert group_federated("u", 200, body, "f", 10.0, into, stamps, late, late_stamps, cache) == len(series)
    recent, recent_stamps = decoded(matrix_body([s for s in series if s[1][-1][0] >= 10.0]))
    assert (into, stamps) == (recent, recent_stamps)
    assert (late, late_stamps) == decoded(matrix_body([s for s in series if s[1][-1][0] < 10.0]))
    assert late["h:3"]["asr_gpu_info"][0][0]["name"] == value
    assert into["h:1"]["asr_gpu_utilization_ratio"][0][1] is None  # NaN: unavailable, not a number
    again: dict = {}
    group_federated("u", 200, body, "f", 0.0, again, {}, {}, {}, cache)  # the next round: the same label dicts
    assert again["h:1"]["asr_host_cpu_ratio"][0][0] is into["h:1"]["asr_host_cpu_ratio"][0][0]


def test_a_federate_error_is_one_line():
    body = b"parse error at char 3: unexpected character\nmore detail\n"
    with pytest.raises(PrometheusError, match="HTTP 400: parse error at char 3") as e:
        group_federated("http://p", 400, body, "/federate of 'x'", 0.0, {}, {}, {}, {}, {})
    assert "\n" not in str(e.value) and str(e.value).startswith("Prometheus at http://p: /federate of 'x' failed")
