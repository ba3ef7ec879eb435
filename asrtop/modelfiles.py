"""PURE comparison of two nodes' model file lists (the agent's /v1/model), for the model view and the
model guard's refusal ("files that differ: ..."). No I/O."""

from __future__ import annotations

from typing import Any, NamedTuple


class FileDiff(NamedTuple):
    path: str  # relative to the model dir
    what: str  # "missing here" | "only here" | "size 1.0 GiB -> 1.1 GiB, sha256 ab12.. -> cd34.."


def human_bytes(n: float | None) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "—"


def _index(files: list[dict]) -> dict[str, tuple[Any, Any]]:
    """Relative path -> (size, sha256). Model dirs sit at different absolute paths on different nodes,
    so files are compared by their path inside the model dir only."""
    out = {}
    for f in files:
        path = f.get("path") or f.get("name")
        if isinstance(path, str):
            out[path] = (f.get("size", f.get("bytes")), f.get("sha256"))
    return out


def _size(v: Any) -> str:
    return human_bytes(v) if isinstance(v, int) else str(v)


def diff_files(reference: list[dict], other: list[dict]) -> list[FileDiff]:
    """Every file that is not identical between `reference` (the target's node) and `other`."""
    a, b = _index(reference), _index(other)
    out = []
    for key in sorted(set(a) | set(b)):
        if key not in b:
            out.append(FileDiff(key, "missing here"))
        elif key not in a:
            out.append(FileDiff(key, "only here"))
        elif a[key] != b[key]:
            (sa, ha), (sb, hb) = a[key], b[key]
            what = []
            if sa != sb:
                what.append(f"size {_size(sa)} -> {_size(sb)}")
            if ha != hb:
                what.append(f"sha256 {str(ha)[:10]} -> {str(hb)[:10]}")
            out.append(FileDiff(key, ", ".join(what)))
    return out
