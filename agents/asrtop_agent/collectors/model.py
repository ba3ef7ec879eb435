"""Model files: SHA-256 of every file under each --model-dir, and a manifest digest, hashed off the request path.

Manifest of one dir: sha256 over the sorted lines "relpath\\tsize\\tsha256\\n" (relpath '/'-separated).
With several dirs, each relpath is prefixed with the dir's index on the command line ("0/", "1/", ...)
and the overall digest is taken over all lines together; with one dir the overall digest equals the
dir's. Hashes are cached by (path, size, mtime_ns, inode), so an unchanged model is re-checked by stat alone.

Every reading carries `listed_at`, when the listing behind it began: a collection round forced by
`GET /v1/status?after=` asks `fresh()` for a reading listed after the round began, so the round reports
the model as it is now (a changed file shows as "hashing" at once), not the previous background result.
"""

from __future__ import annotations

import hashlib
import os
import stat as statmod
import threading
import time
from dataclasses import replace
from typing import Callable, Iterable

from ..snapshot import ModelDirSnap, ModelFile, ModelSnap

CHUNK = 1 << 20  # 1 MiB reads into one reused buffer: measured fastest with OpenSSL's SHA-NI code
FRESH_WAIT = 5.0  # seconds fresh() waits for a listing (stat only) before it says "hashing"


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def manifest_digest(entries: Iterable[tuple[str, int, str]]) -> str:
    """sha256 over the sorted lines "relpath\tsize\tsha256\n" (code-point order = `LC_ALL=C sort`)."""
    h = hashlib.sha256()
    for line in sorted(f"{rel}\t{size}\t{digest}\n" for rel, size, digest in entries):
        h.update(line.encode())
    return h.hexdigest()


class _Unreadable(Exception):
    pass


class ModelHasher:
    """Scans in its own daemon thread whenever `poll()` or `fresh()` asks; neither ever waits for hashing."""

    def __init__(self, dirs: list[str], hash_file: Callable[[str], str] = sha256_file, start: bool = True,
                 clock: Callable[[], float] = time.time):
        self.dirs = [os.path.abspath(d) for d in dirs]
        self.hash_file = hash_file
        self.clock = clock  # the collection loop's clock: listed_at is compared with its round starts
        self._cache: dict[tuple[str, int, int, int], str] = {}
        self._wake = threading.Event()
        self._stop = False
        # guards the published reading and which scan it came from (scans are numbered as they begin)
        self._cond = threading.Condition()
        self._begun = 0  # scans begun
        self._published = 0  # the number of the scan behind _current
        self._hashing = False  # that scan has listed and is hashing now
        self._current = ModelSnap(state="hashing" if dirs else "missing",
                                  error=None if dirs else "no --model-dir given")
        self._thread: threading.Thread | None = None
        if start and self.dirs:
            self._thread = threading.Thread(target=self._run, name="model-hasher", daemon=True)
            self._thread.start()
            self._wake.set()

    # -- called from the collection loop ------------------------------------------------------------
    def poll(self) -> ModelSnap:
        """Ask for a re-check (noticed changes show up within an interval) and return the last result."""
        self._wake.set()
        return self._current

    def last(self) -> ModelSnap:
        """The last result, without asking for a re-check (the rounds between the loop's slow re-checks)."""
        return self._current

    def fresh(self, timeout: float = FRESH_WAIT) -> ModelSnap:
        """A reading whose listing began after this call: waits for the scanning thread to list (by stat),
        never for hashing. While a scan is hashing, "hashing" is the state now, so that is returned at once
        (listed_at: now); so is "hashing" when no listing came within `timeout`."""
        if not self.dirs:
            return self._current  # nothing to list: "missing" holds whenever it is read
        if self._thread is None:  # not started (tests, benchmarks): scan here
            return self.scan()
        with self._cond:
            if not self._hashing:
                target = self._begun + 1  # a scan that begins after now
                self._wake.set()
                if self._cond.wait_for(lambda: self._published >= target or self._stop, timeout) and not self._stop:
                    return self._current
            return replace(self._current, state="hashing", sha256=None, listed_at=self.clock())

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()  # a fresh() waiting gives up at once: the agent is shutting down
        self._wake.set()

    # -- hashing thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            try:
                self.scan()
            except Exception:  # published as this scan's error; keep the thread alive: the next poll retries
                pass

    def _publish(self, snap: ModelSnap, scan: int, hashing: bool = False) -> None:
        with self._cond:
            self._current, self._published, self._hashing = snap, scan, hashing
            self._cond.notify_all()

    def scan(self) -> ModelSnap:
        """One full pass (synchronous; also used directly by tests and benchmarks)."""
        with self._cond:
            self._begun += 1
            number = self._begun
        listed_at = self.clock()
        try:
            snap = self._scan(number, listed_at)
        except Exception as exc:
            self._publish(ModelSnap(state="error", error=f"model scan failed: {exc}", listed_at=listed_at), number)
            raise
        self._publish(snap, number)
        return snap

    def _scan(self, number: int, listed_at: float) -> ModelSnap:
        listings = [self._list(i, d) for i, d in enumerate(self.dirs)]
        todo = [f for listing in listings if isinstance(listing, list) for f in listing
                if (f[0], f[2], f[3], f[4]) not in self._cache]
        if todo:  # show what is known while the (possibly long) hashing runs
            self._publish(self._compose(listings, listed_at), number, hashing=True)
        seen = set()
        errors: dict[int, str] = {}
        for i, listing in enumerate(listings):
            if not isinstance(listing, list):
                continue
            for full, rel, size, mtime, ino in listing:
                key = (full, size, mtime, ino)
                seen.add(key)
                if key in self._cache:
                    continue
                try:
                    digest = self.hash_file(full)
                    st = os.stat(full)
                except OSError as exc:
                    errors.setdefault(i, f"cannot read {rel}: {exc.strerror or exc}")
                    continue
                if (st.st_size, st.st_mtime_ns, st.st_ino) == (size, mtime, ino):
                    self._cache[key] = digest
                else:  # changed while we read it (an upgrade in progress): hash again next round
                    errors.setdefault(i, f"{rel} changed while hashing")
                    self._wake.set()
        for key in [k for k in self._cache if k not in seen]:
            del self._cache[key]
        return self._compose(listings, listed_at, errors=errors)

    def _list(self, index: int, root: str) -> list | str | None:
        """[(full, rel, size, mtime_ns, inode)] or an error string, or None when the dir is missing."""
        if not os.path.isdir(root):
            return None
        out: list = []
        try:
            for full, rel in self._walk(root, ""):
                try:
                    st = os.stat(full)  # follows symlinks: hub caches link files into blob stores
                except OSError as exc:
                    raise _Unreadable(f"cannot read {rel}: {exc.strerror or exc}") from None
                if not statmod.S_ISREG(st.st_mode):
                    raise _Unreadable(f"cannot read {rel}: not a regular file")
                out.append((full, rel, st.st_size, st.st_mtime_ns, st.st_ino))
        except _Unreadable as exc:
            return str(exc)
        return out

    def _walk(self, top: str, prefix: str):
        try:
            entries = sorted(os.scandir(top), key=lambda e: e.name)
        except OSError as exc:
            raise _Unreadable(f"cannot list {prefix or '.'}: {exc.strerror or exc}") from None
        for e in entries:
            rel = prefix + e.name
            try:
                is_dir = e.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                yield from self._walk(e.path, rel + "/")
            else:
                yield e.path, rel

    def _compose(self, listings: list, listed_at: float, errors: dict[int, str] | None = None) -> ModelSnap:
        errors = errors or {}
        dirs, all_lines = [], []
        several = len(self.dirs) > 1
        for i, (root, listing) in enumerate(zip(self.dirs, listings)):
            if listing is None:
                dirs.append(ModelDirSnap(root, "missing", error=f"no such directory: {root}"))
                continue
            if isinstance(listing, str):
                dirs.append(ModelDirSnap(root, "error", error=listing))
                continue
            files = tuple(ModelFile(root, rel, size, self._cache.get((full, size, mtime, ino)))
                          for full, rel, size, mtime, ino in listing)
            total = sum(f.size for f in files)
            if i in errors:
                dirs.append(ModelDirSnap(root, "error", None, len(files), total, errors[i], files))
                continue
            if any(f.sha256 is None for f in files):
                dirs.append(ModelDirSnap(root, "hashing", None, len(files), total, None, files))
                continue
            lines = [(f.path, f.size, f.sha256) for f in files]
            all_lines += [(f"{i}/{rel}" if several else rel, size, d) for rel, size, d in lines]
            dirs.append(ModelDirSnap(root, "ok", manifest_digest(lines), len(files), total, None, files))
        states = {d.state for d in dirs}
        state = next(s for s in ("error", "missing", "hashing", "ok") if s in states or s == "ok")
        known = [d for d in dirs if d.files is not None]
        return ModelSnap(
            state=state,
            sha256=manifest_digest(all_lines) if state == "ok" else None,
            files=sum(d.files for d in known) if known else None,
            bytes=sum(d.bytes for d in known) if known else None,
            error="; ".join(d.error for d in dirs if d.error) or None,
            dirs=tuple(dirs),
            listed_at=listed_at,
        )
