"""The canary stage's seam: one known clip straight to the node, checked against the reference transcript.

The engine calls a CanaryCheck; the real one sends the clip with asrtop.control.canary (imported when a
canary is first sent) and judges it with its check_canary; tests pass a fake with the same signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

from asrtop.control.rollout_model import RolloutSettings


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
    import importlib

    canary = importlib.import_module("asrtop.control.canary")  # loaded with the first canary sent

    try:
        clip = Path(settings.canary).read_bytes() if settings.canary else canary.default_clip()
    except OSError as e:
        return CanaryVerdict(f"cannot read the canary clip {settings.canary}: {e.strerror or e}")
    result = await canary.run_canary(address, clip, settings.canary_api, timeout)
    why = canary.check_canary(result, reference, settings.max_rtf)
    if why is not None:
        return CanaryVerdict(why, result.text)
    rtf = result.seconds / result.audio_seconds if result.audio_seconds else None
    said = "as the reference" if reference is not None else "set as the reference"
    return CanaryVerdict(None, result.text, f"transcript {said} ({result.text!r:.60}), {result.seconds:.2f} s"
                                            + (f", rtf {rtf:.2f}" if rtf is not None else ""))
