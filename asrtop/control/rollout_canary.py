"""The canary stage's seam: one known clip straight to the node, checked against the reference transcript.

The engine calls a CanaryCheck; the real one sends the clip with asrtop.control.canary (imported when a
canary is first sent: aiohttp) and judges it with its check_canary; tests may pass another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable

from asrtop.control.rollout_model import RolloutSettings


CANARY_GRACE = 10.0  # seconds beyond the clip's length x max_rtf before the canary gives up waiting


@dataclass(frozen=True)
class CanaryVerdict:
    error: str | None  # one line: why it failed; None: it passed
    text: str | None = None  # the transcript the node gave
    detail: str = ""  # one line on a pass: "transcript as the reference, rtf 0.12"


# (address "host:port", settings, reference transcript or None for the first node, timeout) -> verdict
CanaryCheck = Callable[[str, RolloutSettings, "str | None", float], Awaitable[CanaryVerdict]]


async def send_canary(address: str, settings: RolloutSettings, reference: str | None,
                      timeout: float) -> CanaryVerdict:
    """The real canary: asrtop.control.canary's run_canary + check_canary."""
    from asrtop.control.canary import ClipError, check_canary, clip_seconds, default_clip, load_clip, run_canary

    try:
        clip = load_clip(settings.canary) if settings.canary else default_clip()
        # slower than max_rtf fails anyway: wait no longer than that (plus a first request's warm-up)
        timeout = min(timeout, clip_seconds(clip) * settings.max_rtf + CANARY_GRACE)
        result = await run_canary(address, clip, settings.canary_api, timeout)
    except (ClipError, ValueError) as e:
        return CanaryVerdict(str(e))
    why = check_canary(result, reference, settings.max_rtf)
    if why is not None:
        return CanaryVerdict(why, result.text)
    said = "as the reference" if reference is not None else "taken as the reference"
    rtf = f", rtf {result.rtf:.2f}" if result.rtf is not None else ""
    return CanaryVerdict(None, result.text, f"transcript {said} ({(result.text or '')[:40]!r}), "
                                            f"{result.seconds:.2f} s{rtf}")
