"""asrtop.balancers.haproxy_pool: which pool words a re-created server carries, and the probe's check."""

from __future__ import annotations

from asrtop.balancers.haproxy_pool import as_shown, mismatch, parse_servers_conn, pool_words, wanted

# recorded from HAProxy 2.6: a configured server, then `add server asr/p1 ...` with no pool words
CONN_26 = """# bkname/svname bkid/svid addr port - purge_delay used_cur used_max need_est unsafe_nb safe_nb idle_lim idle_cur idle_per_thr[2]
asr/n1 3/1 127.0.0.1 19001 - 5000 0 0 0 0 0 -1 0 0 0
asr/p1 3/3 127.0.0.1 19003 - 0 0 0 0 0 0 0 0

"""


def test_defaults_added_only_when_the_line_has_none():
    assert pool_words(["check", "inter", "3s"]) == ["pool-max-conn", "-1", "pool-purge-delay", "5s"]
    assert pool_words(["pool-max-conn", "7"]) == ["pool-purge-delay", "5s"]
    assert pool_words(["pool-purge-delay", "1m", "pool-max-conn", "0"]) == []
    # default-server words come first, the server's own later: the last one is what HAProxy applies
    assert wanted(["pool-max-conn", "10", "check", "pool-max-conn", "20"]) == \
        {"pool-max-conn": "20", "pool-purge-delay": "5s"}


def test_values_as_show_servers_conn_prints_them():
    assert [as_shown("pool-purge-delay", v) for v in ("5s", "5000", "250ms", "2m", "1h", "1d", "1500us", "x")] == \
        ["5000", "5000", "250", "120000", "3600000", "86400000", "1", None]
    assert [as_shown("pool-max-conn", v) for v in ("-1", "0", "12", "lots")] == ["-1", "0", "12", None]


def test_probe_check():
    rows = parse_servers_conn(CONN_26, "asr")
    assert rows["n1"]["idle_lim"] == "-1" and rows["p1"]["purge_delay"] == "0" and "idle_per_thr[2]" not in rows["p1"]
    asked = ["check"] + pool_words(["check"])
    assert mismatch(CONN_26, "asr", "n1", asked) is None
    assert mismatch(CONN_26, "asr", "p1", asked) == \
        "HAProxy gave the probe server pool-max-conn 0 where the line asks for -1"
    assert mismatch(CONN_26, "asr", "p1", ["pool-max-conn", "0", "pool-purge-delay", "0"]) is None
    # nothing to compare: an old HAProxy without the command, another backend, a missing row
    assert mismatch("Unknown command: 'show servers conn'\n", "asr", "p1", asked) is None
    assert mismatch(CONN_26, "other", "p1", asked) is None
    assert mismatch(CONN_26, "asr", "p9", asked) is None
