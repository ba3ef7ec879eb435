"""Listen ports for the demo and the tests come from below the kernel's ephemeral range, each handed out once."""

from __future__ import annotations

import socket

from asrtop.demo import ports


def test_ports_are_below_the_ephemeral_range_distinct_and_skip_a_taken_one():
    first = ports.free_ports(3)
    low, high = ports._LOW, ports._HIGH
    taken = socket.socket()
    taken.bind(("127.0.0.1", first[-1] + 1))  # the cursor's next port is busy now
    try:
        more = ports.free_ports(50)
    finally:
        taken.close()
    got = first + more
    assert len(set(got)) == len(got) == 53
    assert all(low <= p < high <= ports._ephemeral_low() for p in got)
    assert first[-1] + 1 not in more


def test_the_range_low_end_is_read_from_the_kernel_and_has_a_default(tmp_path):
    f = tmp_path / "range"
    f.write_text("40000\t60999\n")
    assert ports._ephemeral_low(str(f)) == 40000
    assert ports._ephemeral_low(str(tmp_path / "missing")) == 32768


def test_a_port_range_can_be_set_and_a_bad_one_is_one_line():
    assert ports._range("20000-26000") == (20000, 26000)
    a, b = (ports._range(ports.share(i, 2)) for i in (0, 1))
    assert a[1] == b[0] and ports._range(None) == (a[0], b[1])
    assert ports._range(None) == (ports._ephemeral_low() - ports.SPAN, ports._ephemeral_low())
    for bad in ("26000-20000", "x-y", "80-90"):
        try:
            ports._range(bad)
        except SystemExit as e:
            assert "ASRTOP_PORT_RANGE" in str(e) and "\n" not in str(e)
        else:
            raise AssertionError(bad)
