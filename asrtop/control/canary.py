"""The rollout's canary: one real transcription request with a known clip, sent straight to a node.

    result = await run_canary("10.0.0.7:10095", default_clip(), api="openai", timeout=30)
    why = check_canary(result, reference="...", max_rtf=1.0)   # None: passed; else one line

Straight to the node's address, never through a balancer: the node is still drained when its canary
runs, and the answer must come from that node. Three request shapes, as the services asrtop watches:

- openai: POST /v1/audio/transcriptions, multipart `file` + response_format=json -> {"text"}
- funasr: POST /asr, multipart `file` -> {"text", ...}  (funasr-server)
- gradio: POST /api/predict/ {"data": ["data:audio/wav;base64,...", "", "auto", true]} -> data[0]
  (the Fun-ASR WebUI)

canary.wav (shipped beside this module): 2.5 s of synthetic, speech-like 16 kHz mono 16-bit PCM, two
voiced bursts between pauses, generated once with asrtop.demo.audio.speech_like_wav(2.5, seed=17). It is
not real speech: a simulated node transcribes it, a real Fun-ASR model may hear nothing in it (an empty
transcript fails the canary), so give a real fleet a recorded clip with --canary / [rollout] canary.
"""

from __future__ import annotations

import base64
import io
import json
import time
import wave
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import aiohttp

from asrtop.config import CANARY_APIS
CLIP_NAME = "canary.wav"
CLIP_CHARS = 60  # how much of a transcript a failure line shows


class ClipError(ValueError):
    """The canary clip cannot be used (one line)."""


@dataclass(frozen=True)
class CanaryResult:
    status: int | None  # HTTP status; None: no answer (refused, timed out)
    text: str | None  # the transcript; None when the answer had none
    seconds: float  # wall time of the request, connect to last byte
    audio_seconds: float  # the clip's length (from its WAV header)
    error: str | None = None  # one line: why there is no status or no text

    @property
    def rtf(self) -> float | None:
        return self.seconds / self.audio_seconds if self.audio_seconds > 0 else None


def clip_seconds(clip: bytes) -> float:
    """The clip's length from its WAV header; ClipError when it is not a WAV."""
    if len(clip) < 12 or clip[:4] != b"RIFF" or clip[8:12] != b"WAVE":
        raise ClipError("not a WAV file (no RIFF/WAVE header)")
    try:
        with wave.open(io.BytesIO(clip), "rb") as w:
            rate, frames = w.getframerate(), w.getnframes()
    except (wave.Error, EOFError) as e:
        raise ClipError(f"unreadable WAV: {e}") from None
    if rate <= 0 or frames <= 0:
        raise ClipError("the WAV holds no audio")
    return frames / rate


def default_clip() -> bytes:
    """The clip asrtop ships (see the module's docstring)."""
    return resources.files(__package__).joinpath(CLIP_NAME).read_bytes()


def load_clip(path: str | Path) -> bytes:
    """A canary clip from a file; ClipError (one line naming the file) when it is missing or not a WAV."""
    try:
        clip = Path(path).expanduser().read_bytes()
    except FileNotFoundError:
        raise ClipError(f"canary clip {path}: no such file") from None
    except IsADirectoryError:
        raise ClipError(f"canary clip {path}: is a directory, expected a WAV file") from None
    except OSError as e:
        raise ClipError(f"canary clip {path}: cannot read it ({e.strerror or e})") from None
    try:
        clip_seconds(clip)
    except ClipError as e:
        raise ClipError(f"canary clip {path}: {e}") from None
    return clip


def _request(api: str, url: str, clip: bytes) -> dict:
    """aiohttp request arguments for the api's call (a fresh FormData each time: it is single-use)."""
    if api == "gradio":
        audio = "data:audio/wav;base64," + base64.b64encode(clip).decode()
        return {"url": url + "/api/predict/", "json": {"data": [audio, "", "auto", True]}}
    form = aiohttp.FormData()
    form.add_field("file", clip, filename=CLIP_NAME, content_type="audio/wav")
    if api == "openai":
        form.add_field("response_format", "json")
        return {"url": url + "/v1/audio/transcriptions", "data": form}
    return {"url": url + "/asr", "data": form}


def _text(api: str, body: object) -> str | None:
    if api == "gradio":
        data = body.get("data") if isinstance(body, dict) else None
        return data[0] if isinstance(data, list) and data and isinstance(data[0], str) else None
    text = body.get("text") if isinstance(body, dict) else None
    return text if isinstance(text, str) else None


def _first_line(raw: bytes) -> str:
    """The service's own reason: a JSON error field, else the body's first line (clipped)."""
    try:
        body = json.loads(raw)
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return body["error"][:200]
    except ValueError:
        pass
    lines = raw.decode("utf-8", "replace").strip().splitlines()
    return lines[0][:200] if lines else "empty body"


async def run_canary(address: str, clip: bytes, api: str = "openai", timeout: float = 30.0,
                     session: aiohttp.ClientSession | None = None) -> CanaryResult:
    """Send one transcription request with `clip` to http://ADDRESS (host:port) and time it. Never raises
    for what the node does (refused, timed out, an error status, no transcript): that is in the result.
    ValueError for an unknown api, ClipError when the clip is not a WAV."""
    if api not in CANARY_APIS:
        raise ValueError(f"canary api must be one of {', '.join(CANARY_APIS)}, got {api!r}")
    audio = clip_seconds(clip)
    url = address.rstrip("/") if "://" in address else f"http://{address}"
    own = session is None
    s = session or aiohttp.ClientSession()
    t0 = time.perf_counter()
    try:
        async with s.post(**_request(api, url, clip), timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            raw = await resp.read()
            took = time.perf_counter() - t0
            if resp.status != 200:
                return CanaryResult(resp.status, None, took, audio, _first_line(raw))
            try:
                text = _text(api, json.loads(raw))
            except ValueError:
                return CanaryResult(resp.status, None, took, audio, f"the answer is not JSON: {_first_line(raw)}")
            return CanaryResult(resp.status, text, took, audio, None if text is not None else "the answer has no transcript")
    except TimeoutError:
        return CanaryResult(None, None, time.perf_counter() - t0, audio, f"no answer from {address} within {timeout:g} s")
    except (aiohttp.ClientError, OSError) as e:
        return CanaryResult(None, None, time.perf_counter() - t0, audio, f"cannot reach {address}: {str(e) or type(e).__name__}")
    finally:
        if own:
            await s.close()


def _clipped(text: str) -> str:
    return repr(text if len(text) <= CLIP_CHARS else text[:CLIP_CHARS - 1] + "…")


def _words(text: str) -> str:
    return " ".join(text.split())


def check_canary(result: CanaryResult, reference: str | None, max_rtf: float) -> str | None:
    """None when the canary passed, else why not (one line): no answer, HTTP status not 200, an empty
    transcript, a transcript that differs from the reference (whitespace aside), or a real-time factor
    (wall seconds / clip seconds) above max_rtf."""
    if result.status is None:
        return result.error or "no answer"
    if result.status != 200:
        return f"HTTP {result.status}" + (f": {result.error}" if result.error else "")
    if result.text is None:
        return result.error or "the answer has no transcript"
    if not result.text.strip():
        return "empty transcript"
    if reference is not None and _words(result.text) != _words(reference):
        return f"transcript differs from the reference: got {_clipped(_words(result.text))}, expected {_clipped(_words(reference))}"
    rtf = result.rtf
    if rtf is not None and rtf > max_rtf:
        return (f"real-time factor {rtf:.2f} above {max_rtf:g} "
                f"({result.seconds:.2f} s for a {result.audio_seconds:.2f} s clip)")
    return None
