"""The packed form PrometheusSource keeps an instance's details in (asrtop.sources.prometheus_kept)."""

from __future__ import annotations

import gc

from hypothesis import given
from hypothesis import strategies as st

from asrtop.sources.prometheus_kept import pack, unpack

_text = st.text(max_size=8)
_value = st.one_of(st.none(), st.floats(allow_nan=False), st.integers(-2**63, 2**63))
_series = st.lists(st.tuples(st.dictionaries(_text, _text, max_size=5), _value), max_size=4)
_metrics = st.dictionaries(_text, _series, max_size=6)


@given(_metrics, _metrics)
def test_packed_series_unpack_to_what_was_packed_and_a_later_part_wins(static, gauges):
    assert unpack(pack(static)) == static
    assert unpack(pack(static) + pack(gauges)) == {**static, **gauges}


def test_a_packed_instance_is_one_tuple_the_first_collection_untracks():
    metrics = {"asr_gpu_info": [({"__name__": "asr_gpu_info", "gpu": "0", "name": "NVIDIA A10"}, 1.0)],
               "asr_requests_total": [({"class": "2xx"}, 1200.0), ({"class": "5xx"}, None)]}
    packed = pack(metrics)
    assert gc.is_tracked(packed)  # as every new tuple
    gc.collect()
    assert not gc.is_tracked(packed)
    assert unpack(packed) == metrics
    assert unpack(None) == unpack(()) == {}
