"""Model revisions of the simulated node: the files on disk, the swap an upgrade makes, the broken ones.

A revision is a model name. Its files are derived from the name, so two nodes on one revision hash the
same and another revision is visibly another model (the agent's digest tells them apart). Two name
endings make a revision broken, so a demo rollout can be shown stopping:

- "...-badcanary": answers a wrong transcript (words dropped), so the canary's reference check fails;
- "...-slow": processes 30x slower than the node's rtf, so the canary's real-time-factor bound fails.

A revision that reports the wrong digest needs no knob: it is just another revision (e.g. the old
Fun-ASR-Nano-2511 while the fleet runs 2512).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

BAD_CANARY_SUFFIX = "-badcanary"
SLOW_SUFFIX = "-slow"
SLOW_FACTOR = 30.0
# A revision names files and travels in argv and JSON: keep it to a plain token.
REVISION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_revision(name: object) -> str:
    """The revision if it is a plain name; ValueError (one line) otherwise."""
    if not isinstance(name, str) or not REVISION_RE.fullmatch(name):
        raise ValueError(f"a model revision is letters, digits, '.', '_' and '-' (at most 100), got {name!r}")
    return name


def write_model_files(path: Path, model_name: str) -> None:
    """Write the revision's files into `path` (bytes derived from the name)."""
    seed = hashlib.sha256(model_name.encode()).digest()
    blob = bytearray()
    while len(blob) < 256 * 1024:
        seed = hashlib.sha256(seed).digest()
        blob += seed
    (path / "model.pt").write_bytes(bytes(blob))
    (path / "config.yaml").write_text(f"model: {model_name}\nencoder: sense_voice\nsample_rate: 16000\n")
    (path / "tokens.json").write_text(json.dumps(["<blank>", "<s>", "</s>"] + [f"tok{i}" for i in range(200)]))


def ensure_model_dir(path: Path, model_name: str) -> list[Path]:
    """Create a small, real model directory if it is empty; a non-empty one is never overwritten."""
    path.mkdir(parents=True, exist_ok=True)
    if not any(path.iterdir()):
        write_model_files(path, model_name)
    return sorted(p for p in path.rglob("*") if p.is_file())


def install_revision(path: Path, model_name: str) -> None:
    """Replace the model directory's files with the revision's, as an upgrade does: write them beside the
    directory first, then move each into place (os.replace: a reader sees a whole old or a whole new file,
    never a half-written one), then remove files the new revision does not have."""
    path.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-{model_name}-", dir=path.parent))
    try:
        write_model_files(staging, model_name)
        new = {p.name for p in staging.iterdir()}
        for name in sorted(new):
            os.replace(staging / name, path / name)
        for old in path.iterdir():
            if old.name not in new:
                shutil.rmtree(old) if old.is_dir() else old.unlink()
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def revision_in_dir(path: Path) -> str | None:
    """The revision a model directory holds (its config.yaml's `model:` line), None when unknown."""
    try:
        for line in (path / "config.yaml").read_text().splitlines():
            if line.startswith("model:"):
                return line.partition(":")[2].strip() or None
    except OSError:
        pass
    return None


def slow_factor(model_name: str) -> float:
    return SLOW_FACTOR if model_name.endswith(SLOW_SUFFIX) else 1.0


def transcript(model_name: str, text: str) -> str:
    """What this revision answers for a clip whose right transcript is `text`: the same text on every
    normal revision (it depends on the audio only); every third word dropped on a -badcanary one."""
    if not model_name.endswith(BAD_CANARY_SUFFIX):
        return text
    words = text.split()
    return " ".join(w for i, w in enumerate(words) if i % 3 != 2)
