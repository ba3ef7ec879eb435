"""DEMO ONLY: inject or clear faults on a simulated node, to see asrtop's problems appear and clear.

    python -m asrtop.demo.fault ADDRESS [--gpu-leak MB_S] [--rss-leak MB_S] [--slow FACTOR] [--errors SHARE]
        [--crash-loop] [--gpu-hot] [--clear] [--timeout S]

Sends the knobs to the simulated node at ADDRESS (this machine only) as one POST /_sim/fault (see
asrtop.demo.simfaults) and prints one line: the node's faults now. Exit 0 when the node took them, 1 when
it refused or did not answer within --timeout (a crash-looping node is retried until it is up again),
2 on bad input (nothing is sent).

The demo console's command palette (ctrl+p, "Demo: ...") sends the same faults to the node under the cursor.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request

from asrtop.demo.simfaults import CRASH_AFTER, MAX_LEAK, FaultError, parse
from asrtop.demo.upgrade import node_url

WHO = "asrtop.demo.fault"
RETRY = 0.2

# The palette's faults: id -> (what it sets, how the palette names it). A 50 MiB/s GPU leak fills the
# simulated 80 GiB GPU in about 25 minutes: a leak rule sees it within its window, long before.
PRESETS: dict[str, tuple[dict, str]] = {
    "gpu-leak": ({"gpu_leak_mb_s": 50.0}, "GPU memory leak, 50 MiB/s (simulated)"),
    "rss-leak": ({"rss_leak_mb_s": 6.0}, "process memory leak, 6 MiB/s (real, at most 1 GiB)"),
    "slow": ({"slowdown": 4.0}, "slow node, 4x processing time"),
    "errors": ({"error_rate": 0.3}, "errors, 30% of requests answered 500"),
    "crash-loop": ({"crash_loop": True}, f"crash loop, exits {CRASH_AFTER:g} s after each start"),
    "gpu-hot": ({"gpu_hot": True}, "GPU hot, thermal slowdown (simulated)"),
    "clear": ({"clear": True}, "clear every fault"),
}


class FaultRefused(RuntimeError):
    """One line: why the node did not take the faults."""


def _post(url: str, knobs: dict, timeout: float) -> dict:
    req = urllib.request.Request(url + "/_sim/fault", data=json.dumps(knobs).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def send(address: str, knobs: dict, timeout: float = 10.0) -> dict:
    """POST the checked knobs to the node at `address`; its answer (the faults now). ValueError (one line)
    for a bad address or knob, FaultRefused when the node refused or did not answer within `timeout`
    (a node that is down, e.g. between the restarts of a crash loop, is asked again until then)."""
    url = node_url(address, WHO)
    parse(knobs)  # FaultError (a ValueError) before anything is sent
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = _post(url, knobs, max(0.5, min(5.0, deadline - time.monotonic())))
            if not isinstance(answer, dict):
                raise ValueError("not a JSON object")
            return answer
        except urllib.error.HTTPError as e:
            try:
                why = json.loads(e.read()).get("error") or e.reason
            except (ValueError, AttributeError):
                why = e.reason
            raise FaultRefused(f"the node at {address} refused the faults (HTTP {e.code}): {why}") from None
        except (OSError, ValueError) as e:
            if time.monotonic() + RETRY >= deadline:
                raise FaultRefused(f"no simulated node answered at {address} within {timeout:g} s "
                                   f"({getattr(e, 'reason', None) or e})") from None
            time.sleep(RETRY)


def describe(state: dict) -> str:
    """The node's faults, as one clause: "GPU leak 50 MiB/s (1.2 GiB so far), slowdown x4" or "no faults"."""
    parts = []
    if state.get("gpu_leak_mb_s"):
        parts.append(f"GPU leak {state['gpu_leak_mb_s']:g} MiB/s ({(state.get('gpu_leaked_bytes') or 0) / 2**30:.1f} "
                     f"GiB so far, simulated)")
    if state.get("rss_leak_mb_s"):
        parts.append(f"process memory leak {state['rss_leak_mb_s']:g} MiB/s "
                     f"({(state.get('rss_leaked_bytes') or 0) / 2**20:.0f} MiB held)")
    if (state.get("slowdown") or 1.0) != 1.0:
        parts.append(f"slowdown x{state['slowdown']:g}")
    if state.get("error_rate"):
        parts.append(f"errors {state['error_rate']:.0%}")
    if state.get("crash_loop"):
        parts.append(f"crash loop ({state['crash_loop']:g} s after each start)")
    if state.get("gpu_hot"):
        parts.append("GPU hot (simulated)")
    return ", ".join(parts) or "no faults"


class DemoFaults:
    """The demo console's fault palette, behind asrtop.tui.demo_faults.DemoFaultInjector (the console may not
    import the demo): the presets, sent with `send`."""

    def __init__(self, timeout: float = 10.0):
        self.timeout = timeout

    def faults(self) -> list[tuple[str, str]]:
        return [(fault, words) for fault, (_, words) in PRESETS.items()]

    def inject(self, address: str, fault: str) -> tuple[bool, str]:
        try:
            state = send(address, PRESETS[fault][0], self.timeout)
        except (KeyError, ValueError, FaultRefused) as e:
            return False, str(e) if not isinstance(e, KeyError) else f"no demo fault {fault!r}"
        return True, describe(state)


def _number(low: float, high: float, low_open: bool = False):
    def check(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (low < v if low_open else low <= v) or not v <= high:
            raise argparse.ArgumentTypeError(f"must be in {'(' if low_open else '['}{low:g}, {high:g}], got {text}")
        return v
    return check


def knobs_from(a: argparse.Namespace) -> dict:
    knobs: dict = {"clear": True} if a.clear else {}
    for key, value in (("gpu_leak_mb_s", a.gpu_leak), ("rss_leak_mb_s", a.rss_leak), ("slowdown", a.slow),
                       ("error_rate", a.errors)):
        if value is not None:
            knobs[key] = value
    if a.crash_loop:
        knobs["crash_loop"] = True
    if a.gpu_hot:
        knobs["gpu_hot"] = True
    return knobs


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not the usage block: bad input is one clear line
        self.exit(2, f"{WHO}: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    p = _Parser(
        prog="python -m asrtop.demo.fault", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Inject or clear faults on a simulated node of `asrtop demo` (this machine only), to see\n"
                    "asrtop's problems appear and clear. Prints the node's faults after the change.",
        epilog="examples:\n  python -m asrtop.demo.fault 127.0.0.1:40123 --gpu-leak 50\n"
               "  python -m asrtop.demo.fault 127.0.0.1:40123 --slow 4 --errors 0.2\n"
               "  python -m asrtop.demo.fault 127.0.0.1:40123 --clear\n"
               "ADDRESS is a node's `address` in the demo's cluster file (its path is printed as the demo starts).\n"
               "exit: 0 done, 1 the node refused or did not answer, 2 bad input (nothing sent)")
    p.add_argument("address", metavar="ADDRESS", help="the simulated node's HOST:PORT (127.0.0.1, ::1 or localhost)")
    p.add_argument("--gpu-leak", type=_number(0, MAX_LEAK), metavar="MB_S",
                   help="grow the SIMULATED GPU memory by MB_S MiB per second until the simulated GPU is full (0 stops)")
    p.add_argument("--rss-leak", type=_number(0, MAX_LEAK), metavar="MB_S",
                   help="make the node process really allocate MB_S MiB per second, at most 1 GiB (0 frees it)")
    p.add_argument("--slow", type=_number(0, 1000, low_open=True), metavar="FACTOR",
                   help="multiply processing time by FACTOR (1 = normal)")
    p.add_argument("--errors", type=_number(0, 1), metavar="SHARE", help="answer SHARE (0..1) of requests with 500")
    p.add_argument("--crash-loop", action="store_true",
                   help=f"exit {CRASH_AFTER:g} s after every start until cleared (the demo restarts it, as systemd would)")
    p.add_argument("--gpu-hot", action="store_true", help="the simulated GPU runs hot (94 C, thermal slowdown)")
    p.add_argument("--clear", action="store_true",
                   help="every fault back to normal (applied before the other options given with it)")
    p.add_argument("--timeout", type=_number(0, 3600, low_open=True), default=10.0, metavar="S",
                   help="seconds to keep asking a node that does not answer (default 10)")
    try:
        a = p.parse_args(argv)
    except SystemExit as e:  # --help, or a bad option (its one line is out): the exit code, as a return
        return int(e.code or 0)
    knobs = knobs_from(a)
    if not knobs:
        print(f"{WHO}: nothing to do: give a fault (--gpu-leak, --rss-leak, --slow, --errors, --crash-loop, "
              f"--gpu-hot) or --clear", file=sys.stderr)
        return 2
    try:
        node_url(a.address, WHO)
        parse(knobs)
    except (ValueError, FaultError) as e:
        print(f"{WHO}: {e}", file=sys.stderr)
        return 2
    try:
        state = send(a.address, knobs, a.timeout)
    except FaultRefused as e:
        print(f"{WHO}: {e}", file=sys.stderr)
        return 1
    print(f"{state.get('name') or a.address}: {describe(state)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
