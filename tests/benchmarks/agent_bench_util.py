"""Shared helpers for the agent benchmarks (run by hand; pytest ignores this folder)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests/ -> `support` package


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def ms(x: float) -> str:
    return f"{x * 1000:.3f} ms"


def make_model_dir(tmp: Path, files: int = 12, size: int = 100_000) -> Path:
    """A model directory of random files for the agent to hash."""
    model = tmp / "model"
    model.mkdir()
    for i in range(files):
        (model / f"part-{i}.bin").write_bytes(os.urandom(size))
    return model
