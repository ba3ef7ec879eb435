"""Listen ports for the demo and the tests come from below the kernel's ephemeral range, each handed out once."""

from __future__ import annotations

import socket

from asrtop.demo import ports


def test_ports_are_below_the_ephemeral_range_distinct_and_skip_a_taken_one():
    low = ports._ephemeral_low()
    first = ports.free_ports(3)
    taken = socket.socket()
    taken.bind(("127.0.0.1", first[-1] + 1))  # the cursor's next port is busy now
    try:
        more = ports.free_ports(50)
    finally:
        taken.close()
    got = first + more
    assert len(set(got)) == len(got) == 53
    assert all(low - ports.SPAN <= p < low for p in got)
    assert first[-1] + 1 not in more


def test_the_range_low_end_is_read_from_the_kernel_and_has_a_default(tmp_path):
    f = tmp_path / "range"
    f.write_text("40000\t60999\n")
    assert ports._ephemeral_low(str(f)) == 40000
    assert ports._ephemeral_low(str(tmp_path / "missing")) == 32768
