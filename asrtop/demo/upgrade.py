"""DEMO ONLY: upgrade a simulated node to another model revision (the demo cluster's rollout hook).

    python -m asrtop.demo.upgrade ADDRESS --to REVISION [--timeout S]

Asks the simulated node at ADDRESS (this machine only) to install REVISION's model files and restart
(POST /_sim/upgrade), then waits until the restarted node's /health answers with REVISION, as a real
upgrade script returns once the service has started again. One line per step; exit 0 when the node is
up on REVISION, 1 when it refused or did not come back in time, 2 on bad input.

The demo's cluster file names it as `[rollout] hook`, so `asrtop rollout` on the demo needs no flags.
Revisions ending in -badcanary or -slow are broken on purpose (see asrtop.demo.revisions).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import urllib.error
import urllib.request
from typing import Callable

from asrtop.demo.revisions import check_revision

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
POLL = 0.05


def hook_template(revision: str) -> str:
    """This hook as a [rollout] hook line: this interpreter, {address} filled in by asrtop per node."""
    return f"{shlex.quote(sys.executable)} -m asrtop.demo.upgrade {{address}} --to {revision}"


class UpgradeError(RuntimeError):
    """One line: why the node is not up on the revision."""


def node_url(address: str, who: str = "the demo's upgrade hook") -> str:
    """http://ADDRESS for a loopback host:port; ValueError (one line) for anything else."""
    host, sep, port = address.rpartition(":")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not bare:
        raise ValueError(f"expected HOST:PORT of a simulated node, got {address!r}")
    if bare not in LOOPBACK_HOSTS:
        raise ValueError(f"refusing {address}: {who} only talks to simulated nodes on this "
                         f"machine ({', '.join(LOOPBACK_HOSTS)})")
    return f"http://{'[::1]' if bare == '::1' else bare}:{port}"


def _health(url: str, timeout: float = 1.0) -> dict | None:
    try:
        with urllib.request.urlopen(url + "/health", timeout=timeout) as r:
            body = json.loads(r.read())
        return body if isinstance(body, dict) else None
    except (OSError, ValueError):
        return None


def _ask(url: str, revision: str) -> dict:
    req = urllib.request.Request(url + "/_sim/upgrade", data=json.dumps({"model": revision}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            why = json.loads(e.read()).get("error") or e.reason
        except (ValueError, AttributeError):
            why = e.reason
        raise UpgradeError(f"the node refused the upgrade (HTTP {e.code}): {why}") from None
    except (OSError, ValueError) as e:
        raise UpgradeError(f"the upgrade request failed: {getattr(e, 'reason', None) or e}") from None


def _models(health: dict | None) -> list[str]:
    models = (health or {}).get("models_loaded")
    return [str(m) for m in models] if isinstance(models, list) else []


def upgrade(address: str, revision: str, timeout: float = 30.0, say: Callable[[str], None] = print) -> float:
    """Upgrade the node at `address` to `revision` and wait until it is up on it; returns the seconds
    taken. UpgradeError (one line) when it refused or did not come back within `timeout`."""
    url = node_url(address)
    check_revision(revision)
    t0 = time.monotonic()
    before = _health(url, timeout=5.0)
    if before is None:
        raise UpgradeError(f"no simulated node answers /health at {address}")
    name = before.get("node") or address
    say(f"{name} at {address} runs {', '.join(_models(before)) or 'an unknown model'} (pid {before.get('pid')})")
    answer = _ask(url, revision)
    say(f"{name}: installing {revision} and restarting (pid {answer.get('pid')})")
    deadline = t0 + timeout
    last = before
    while time.monotonic() < deadline:
        now = _health(url)
        # A new start time: the answer comes from the restarted process, not the one about to exec.
        if now is not None and now.get("started_at") != before.get("started_at"):
            last = now
            if revision in _models(now):
                took = time.monotonic() - t0
                say(f"{name}: up on {revision} after {took:.1f} s (pid {now.get('pid')})")
                return took
        time.sleep(POLL)
    seen = ", ".join(_models(last)) if last is not before else "not restarted yet"
    raise UpgradeError(f"{name} did not come back on {revision} within {timeout:g} s (last seen: {seen})")


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < v <= 3600:
        raise argparse.ArgumentTypeError(f"must be in (0, 3600] seconds, got {text}")
    return v


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m asrtop.demo.upgrade", description=__doc__.split("\n\n")[0]
                                + " Talks only to simulated nodes on this machine; a real fleet's hook is your "
                                "own upgrade command.")
    p.add_argument("address", metavar="ADDRESS", help="the simulated node's HOST:PORT (127.0.0.1, ::1 or localhost)")
    p.add_argument("--to", required=True, metavar="REVISION",
                   help="model revision to install, e.g. Fun-ASR-Nano-2512 (-badcanary / -slow: broken on purpose)")
    p.add_argument("--timeout", type=_positive, default=30.0, metavar="S",
                   help="seconds to wait for the node to come back on REVISION (default 30)")
    a = p.parse_args(argv)
    try:
        node_url(a.address)
        check_revision(a.to)
    except ValueError as e:
        print(f"asrtop.demo.upgrade: {e}", file=sys.stderr)
        return 2
    try:
        upgrade(a.address, a.to, a.timeout, say=lambda line: print(line, flush=True))
    except UpgradeError as e:
        print(f"asrtop.demo.upgrade: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
