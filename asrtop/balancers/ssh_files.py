"""SSHHost's files over SFTP, with host.py's semantics and errors: reads, glob (glob.glob's rule for hidden
names), is_dir, atomic writes."""

from __future__ import annotations

import asyncio
import fnmatch
import posixpath
import secrets
from typing import Any, Sequence

from asrtop.balancers import ssh_errors

READ_CHUNK = 1 << 16  # bytes asked per SFTP read; a read past the end returns none


async def read_file(sftp: Any, path: str) -> bytes:
    """The whole file. A small regular file (an nginx config, a pid file) in two round trips, not four: the
    open, then its size, its bytes and the close sent together. Those bytes are the whole file when they are
    as many as its size and fewer than asked (a short read alone proves nothing: SFTP allows one anywhere);
    else (a larger file, one changed between the two) it is read again to the end, as a /proc or /sys file
    (size 0) is at once."""
    if not path.startswith(("/proc/", "/sys/")):
        # block_size=0: one plain request per read, not asyncssh's parallel reader
        f = await sftp.open(path, "rb", block_size=0)
        # the server answers in order, so the close goes right behind the read
        attrs, data, closed = await asyncio.gather(f.stat(), f.read(READ_CHUNK, 0), f.close(),
                                                   return_exceptions=True)
        for result in (attrs, data, closed):
            if isinstance(result, BaseException):
                raise result
        if attrs.size == len(data) < READ_CHUNK:
            return data
    async with sftp.open(path, "rb", block_size=0) as f:
        chunks = []
        while chunk := await f.read(READ_CHUNK):
            chunks.append(chunk)
        return b"".join(chunks)


async def read_or_error(sftp: Any, path: str) -> bytes | OSError:
    """read_file, or the OSError a local read of path would raise."""
    try:
        return await read_file(sftp, path)
    except ssh_errors.sftp_error_types() as e:
        return await ssh_errors.file_error(e, path, sftp)


async def glob(sftp: Any, pattern: str) -> list[str]:
    """glob.glob's answer, sorted. The usual include (`conf.d/*.conf`: a wildcard in the last name only) is
    one listing of the directory, a request fewer than asyncssh's glob (which stats it first)."""
    directory, name = posixpath.split(pattern)
    try:
        if directory and not _has_magic(directory):
            names = [e.filename async for e in sftp.scandir(directory)]
            found = [posixpath.join(directory, n) for n in fnmatch.filter(names, name) if n not in (".", "..")]
        else:
            found = await sftp.glob(pattern)
        return sorted(visible(pattern, found))
    except ssh_errors.sftp_error_types():
        return []  # no match (asyncssh raises; glob.glob returns nothing)


def _has_magic(path: str) -> bool:
    return any(c in path for c in "*?[")


async def isdir(sftp: Any, path: str) -> bool:
    try:
        return await sftp.isdir(path)
    except ssh_errors.sftp_error_types():
        return False  # as os.path.isdir: unreadable counts as absent


async def write_atomic(sftp: Any, path: str, data: bytes) -> None:
    """Host.write_atomic over SFTP: a temp file next to path with its mode and owner, fsync, posix-rename."""
    import asyncssh

    try:
        st = await sftp.stat(path)
    except asyncssh.SFTPNoSuchFile:
        st = None
    except ssh_errors.sftp_error_types() as e:
        raise await ssh_errors.file_error(e, path, sftp) from None
    directory = posixpath.dirname(path) or "."
    tmp = posixpath.join(directory, f".{posixpath.basename(path)}.{secrets.token_hex(4)}.asrtop")
    mode = (st.permissions & 0o7777) if st is not None and st.permissions is not None else 0o644
    try:
        try:
            async with sftp.open(tmp, "xb", asyncssh.SFTPAttrs(permissions=0o600)) as f:
                await f.write(data)
                await f.chmod(mode)  # after creation: the server's umask does not apply
                if st is not None and st.uid is not None:
                    try:
                        await f.chown(st.uid, st.gid)
                    except asyncssh.SFTPPermissionDenied:
                        pass  # not root there: the file keeps the login's owner, which the mode still governs
                try:
                    await f.fsync()
                except asyncssh.SFTPOpUnsupported:
                    pass
            await sftp.posix_rename(tmp, path)
        except ssh_errors.sftp_error_types() as e:
            raise await ssh_errors.file_error(e, path, sftp) from None
    except BaseException:
        try:
            await sftp.remove(tmp)
        except Exception:
            pass
        raise
    # the rename made durable: OpenSSH's sftp-server opens a directory read-only like a file, and
    # fsync@openssh.com on that handle is fsync(2) of the directory (best effort: another server may refuse)
    try:
        async with sftp.open(directory, "rb") as d:
            await d.fsync()
    except asyncssh.SFTPError:
        pass


def visible(pattern: str, paths: Sequence[str]) -> list[str]:
    """glob.glob's rule, which asyncssh's glob lacks: a wildcard does not match a name starting with a dot."""
    parts = pattern.split("/")
    magic = [any(c in p for c in "*?[") and not p.startswith(".") for p in parts]

    def shown(path: str) -> bool:
        names = path.split("/")
        return len(names) != len(parts) or not any(m and n.startswith(".") for m, n in zip(magic, names))

    return [p for p in paths if shown(p)]
