"""Model hashing against hashlib on generated files: manifest, cache, change detection, missing/unreadable."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from asrtop_agent.collectors.model import ModelHasher, manifest_digest, sha256_file


def write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def model(tmp_path):
    root = tmp_path / "Fun-ASR-Nano-2512"
    digests = {
        "model.pt": write(root / "model.pt", os.urandom(3 * 1024 * 1024 + 17)),  # several 1 MiB chunks + tail
        "config.yaml": write(root / "config.yaml", b"model: FunASRNano\n"),
        "tokenizer/vocab.txt": write(root / "tokenizer" / "vocab.txt", b"a\nb\n"),
        "empty.bin": write(root / "empty.bin", b""),
    }
    return root, digests


def expected_manifest(root, digests, prefix=""):
    lines = sorted(f"{prefix}{rel}\t{(root / rel).stat().st_size}\t{d}\n" for rel, d in digests.items())
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def test_file_digest_matches_hashlib(model):
    root, digests = model
    for rel, d in digests.items():
        assert sha256_file(str(root / rel)) == d


def test_manifest_matches_documented_formula(model):
    root, digests = model
    snap = ModelHasher([str(root)], start=False).scan()
    assert snap.state == "ok" and snap.error is None
    assert snap.files == 4 and snap.bytes == sum((root / r).stat().st_size for r in digests)
    assert snap.sha256 == snap.dirs[0].sha256 == expected_manifest(root, digests)
    by_path = {f.path: f.sha256 for f in snap.dirs[0].file_list}
    assert by_path == digests


def test_several_dirs_prefix_relpaths_with_dir_index(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    da = {"w.bin": write(a / "w.bin", b"weights")}
    db = {"w.bin": write(b / "w.bin", b"other weights")}
    snap = ModelHasher([str(a), str(b)], start=False).scan()
    assert snap.state == "ok"
    assert [d.sha256 for d in snap.dirs] == [expected_manifest(a, da), expected_manifest(b, db)]
    lines = sorted([("0/w.bin", 7, da["w.bin"]), ("1/w.bin", 13, db["w.bin"])])
    assert snap.sha256 == manifest_digest(lines)
    assert snap.sha256 != ModelHasher([str(b), str(a)], start=False).scan().sha256  # order is part of identity


def test_unchanged_files_are_not_read_again_and_changes_are_noticed(model):
    root, digests = model
    calls = []

    def counting(path):
        calls.append(os.path.basename(path))
        return sha256_file(path)

    h = ModelHasher([str(root)], hash_file=counting, start=False)
    first = h.scan()
    assert len(calls) == 4
    calls.clear()
    assert h.scan().sha256 == first.sha256 and calls == []  # stat alone
    new = os.urandom(1024)
    (root / "config.yaml").write_bytes(new)
    os.utime(root / "config.yaml", ns=(time.time_ns(), time.time_ns() + 1_000_000))  # mtime surely moves
    changed = h.scan()
    assert calls == ["config.yaml"]
    assert changed.sha256 != first.sha256
    digests["config.yaml"] = hashlib.sha256(new).hexdigest()
    assert changed.sha256 == expected_manifest(root, digests)
    (root / "tokenizer" / "vocab.txt").unlink()
    assert h.scan().files == 3


def test_missing_dir_is_missing_not_a_crash(tmp_path, model):
    root, _ = model
    snap = ModelHasher([str(tmp_path / "nope")], start=False).scan()
    assert snap.state == "missing" and snap.sha256 is None and "nope" in snap.error
    both = ModelHasher([str(root), str(tmp_path / "nope")], start=False).scan()
    assert both.state == "missing" and both.sha256 is None
    assert [d.state for d in both.dirs] == ["ok", "missing"]


def test_dangling_symlink_is_an_error_naming_the_file(model):
    # Tests run as root, where chmod 000 does not stop reads; a dangling link fails for root too.
    root, _ = model
    os.symlink(root / "gone.safetensors", root / "model.safetensors")
    snap = ModelHasher([str(root)], start=False).scan()
    assert snap.state == "error" and snap.sha256 is None
    assert "model.safetensors" in snap.error


def test_fifo_is_an_error_and_never_blocks(model):
    root, _ = model
    os.mkfifo(root / "pipe")  # opening it for reading would block forever
    snap = ModelHasher([str(root)], start=False).scan()
    assert snap.state == "error" and "pipe" in snap.error and "not a regular file" in snap.error


def test_symlinked_files_are_hashed_through_the_link(tmp_path):
    # Model hub caches keep blobs elsewhere and link them into the snapshot dir.
    blobs = tmp_path / "blobs"
    d = write(blobs / "abc", b"blob-content")
    snap_dir = tmp_path / "snapshot"
    snap_dir.mkdir()
    os.symlink(blobs / "abc", snap_dir / "model.pt")
    snap = ModelHasher([str(snap_dir)], start=False).scan()
    assert snap.state == "ok" and snap.dirs[0].file_list[0].sha256 == d


def test_background_thread_publishes_hashing_then_ok(model):
    root, digests = model
    h = ModelHasher([str(root)])
    try:
        first = h.poll()
        assert first.state in ("hashing", "ok")
        deadline = time.monotonic() + 20
        while h.poll().state != "ok" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert h.poll().sha256 == expected_manifest(root, digests)
        write(root / "extra.bin", b"new file during an upgrade")
        digests["extra.bin"] = hashlib.sha256(b"new file during an upgrade").hexdigest()
        # Not "5 files and ok, then the digest": write_bytes creates the file before it writes it, so a scan
        # in between rightly reports 5 files, ok, with extra.bin empty (seen in a full run); the next scan
        # sees its new size and time and hashes it again.
        while h.poll().sha256 != expected_manifest(root, digests) and time.monotonic() < deadline:
            time.sleep(0.01)
        last = h.poll()
        assert (last.state, last.files, last.sha256) == ("ok", 5, expected_manifest(root, digests))
    finally:
        h.stop()


def test_no_model_dir_given():
    snap = ModelHasher([], start=False).poll()
    assert snap.state == "missing" and snap.error
