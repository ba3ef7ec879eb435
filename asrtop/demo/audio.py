"""Real audio for the demo: WAV parsing, a simple energy VAD, speech-like test signals, the Gradio audio argument.

Stdlib only (`wave`, `array`), no numpy: the VAD looks at a strided subset of each frame's samples, which
is plenty to tell a voiced burst from a pause and keeps one minute of 16 kHz audio at a few milliseconds
of CPU, so a 2-core laptop can serve hundreds of concurrent streams.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import random
import struct
import sys
import wave
from array import array
from dataclasses import dataclass
from operator import mul
from pathlib import Path


class AudioError(ValueError):
    """The body is not audio this node can read (one line, returned as a 400)."""


@dataclass(frozen=True)
class Audio:
    sample_rate: int
    channels: int
    sample_width: int  # bytes per sample
    frames: int
    samples: array  # first channel only, as signed ints

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


@dataclass(frozen=True)
class Segment:
    start: float
    end: float

    @property
    def length(self) -> float:
        return self.end - self.start


_TYPECODES = {2: "h", 4: "i"}


def read_wav(data: bytes) -> Audio:
    """Parse a PCM WAV (8/16/32-bit, any rate, mono or multichannel); raise AudioError otherwise."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioError("not a WAV file (no RIFF/WAVE header); send 16-bit PCM WAV audio")
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            rate, channels, width, nframes = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
            raw = w.readframes(nframes)
    except (wave.Error, EOFError, struct.error) as e:
        raise AudioError(f"unreadable WAV: {e}") from None
    if rate <= 0 or channels <= 0:
        raise AudioError(f"unreadable WAV: sample rate {rate}, channels {channels}")
    if width == 1:  # 8-bit WAV is unsigned
        samples = array("h", (b - 128 for b in raw[::channels]))
    elif width in _TYPECODES:
        samples = array(_TYPECODES[width])
        samples.frombytes(raw[: len(raw) - len(raw) % width])
        if sys.byteorder == "big":
            samples.byteswap()
        if channels > 1:
            samples = samples[::channels]
    else:
        raise AudioError(f"unsupported WAV sample width {width * 8} bits (use 8, 16 or 32-bit PCM)")
    frames = len(raw) // (width * channels)  # a truncated file tells its real length, not the header's
    return Audio(rate, channels, width, frames, samples)


def vad_segments(audio: Audio, frame_s: float = 0.02, min_speech_s: float = 0.2, min_gap_s: float = 0.3,
                 threshold_ratio: float = 0.1, stride_samples: int = 40) -> list[Segment]:
    """Energy VAD: frames above `threshold_ratio` of the loudest frame's RMS (and above a noise floor)
    are speech; gaps shorter than `min_gap_s` are bridged; segments shorter than `min_speech_s` dropped."""
    n = max(1, int(audio.sample_rate * frame_s))
    step = max(1, n // stride_samples)
    s = audio.samples
    energies = []
    for i in range(0, len(s) - n + 1, n):
        part = s[i:i + n:step]
        energies.append(math.sqrt(sum(map(mul, part, part)) / len(part)))
    if not energies:
        return []
    full_scale = float(1 << (8 * min(audio.sample_width, 2) - 1)) if audio.sample_width < 4 else float(1 << 31)
    floor = full_scale * 0.003  # about -50 dBFS: silence with a little noise stays silence
    threshold = max(max(energies) * threshold_ratio, floor)
    segments: list[list[float]] = []
    for k, e in enumerate(energies):
        if e < threshold:
            continue
        start, end = k * frame_s, (k + 1) * frame_s
        if segments and start - segments[-1][1] < min_gap_s:
            segments[-1][1] = end
        else:
            segments.append([start, end])
    dur = audio.duration
    return [Segment(round(a, 3), round(min(b, dur), 3)) for a, b in segments if b - a >= min_speech_s]


def speech_like_wav(seconds: float, sample_rate: int = 16000, seed: int = 0) -> bytes:
    """A speech-like 16-bit mono WAV: voiced bursts (a harmonic stack on a wandering pitch, under a smooth
    amplitude envelope) of 0.3-2.5 s, separated by 0.2-1.2 s pauses of faint noise."""
    rng = random.Random(seed)
    total = int(seconds * sample_rate)
    out = array("h", bytes(2 * total))
    t = 0
    while t < total:
        pause = int(rng.uniform(0.2, 1.2) * sample_rate)
        for i in range(t, min(total, t + pause)):
            out[i] = int(rng.gauss(0, 30))
        t += pause
        burst = min(total - t, int(rng.uniform(0.3, 2.5) * sample_rate))
        if burst <= 0:
            break
        f0 = rng.uniform(90, 240)
        amp = rng.uniform(4000, 9000)
        phase = 0.0
        two_pi = 2 * math.pi
        for j in range(burst):
            env = math.sin(math.pi * j / burst) ** 0.5  # smooth attack and release, no click
            f = f0 * (1 + 0.08 * math.sin(two_pi * 3 * j / sample_rate))  # intonation
            phase += two_pi * f / sample_rate
            v = math.sin(phase) + 0.5 * math.sin(2 * phase) + 0.3 * math.sin(3 * phase) + 0.15 * math.sin(5 * phase)
            out[t + j] = int(max(-32767, min(32767, amp * env * v / 1.95)))
        t += burst
    if sys.byteorder == "big":
        out.byteswap()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(out.tobytes())
    return buf.getvalue()


def gradio_audio(item) -> bytes:
    """The audio argument of a Gradio /api/predict/ call (the Fun-ASR WebUI): a WAV path on this machine,
    base64 (a data URL or bare), or a file object; AudioError otherwise."""
    if isinstance(item, dict):
        if isinstance(item.get("data"), str):
            item = item["data"]
        elif isinstance(item.get("path") or item.get("name"), str):
            item = item.get("path") or item.get("name")
        else:
            raise AudioError('audio object needs "path", "name" or "data"')
    if not isinstance(item, str) or not item:
        raise AudioError("audio must be a WAV path on the node, base64 WAV data, or a file object")
    if item.startswith("data:"):
        _, _, item = item.partition(",")
        return _b64(item)
    if len(item) > 4096 or item.startswith("UklGR"):  # "RIFF" in base64
        return _b64(item)
    path = Path(item)
    if not path.is_file():
        raise AudioError(f"audio file not found on node: {item}")
    try:
        return path.read_bytes()
    except OSError as e:
        raise AudioError(f"cannot read audio file {item}: {e.strerror}") from None


def _b64(s: str) -> bytes:
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise AudioError("audio data is not valid base64") from None
