"""asyncssh's failures in the words and exception types of host.py (one line each), for ssh_host.

Files: the OSError Python raises locally, with filename. The admin socket: the OSError a local connect raises.
The transport: the reason after "ssh USER@HOST:PORT: " (a refused connection, an unknown or changed host key,
a refused key, a dropped connection). asyncssh is imported inside the functions (only once SSH is used).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from typing import Any, Awaitable, Callable


class JumpFailed(Exception):
    """The jump host could not be reached; str(e) says which and why."""


def sftp_error_types() -> type:
    import asyncssh

    return asyncssh.SFTPError


def is_transport_error(e: BaseException) -> bool:
    """Did the connection itself fail (as opposed to the file, command or socket asked for)?"""
    import asyncssh

    if isinstance(e, (asyncssh.DisconnectError, asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection,
                      BrokenPipeError, ConnectionResetError, EOFError)):
        return True
    return isinstance(e, asyncssh.ChannelOpenError) and "connection closed" in str(e.reason)


def transport_why(e: BaseException | None, target: Any) -> str:
    import asyncssh

    if isinstance(e, asyncssh.DisconnectError):
        return e.reason or type(e).__name__
    if isinstance(e, asyncssh.SFTPError):
        return e.reason or "SFTP session lost"
    if isinstance(e, OSError):
        return e.strerror or str(e) or type(e).__name__
    return str(e) or type(e).__name__ if e is not None else "closed by the host"


def connect_why(e: BaseException, target: Any, timeout: float | None = None) -> str:
    """Why a connection to target failed, in one line."""
    import asyncssh

    if isinstance(e, JumpFailed):
        return str(e)
    if isinstance(e, asyncssh.HostKeyNotVerifiable):
        return host_key_why(target)
    if isinstance(e, asyncssh.PermissionDenied):
        key = f"key {target.identity}" if target.identity else "the agent's and ~/.ssh's keys"
        return f"authentication refused ({key}; is the public key in authorized_keys?)"
    if isinstance(e, asyncio.TimeoutError):
        return f"no answer within {timeout:g}s" if timeout else "no answer"
    if isinstance(e, socket.gaierror):
        return f"unknown host {target.host!r}"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused (no sshd listening there?)"
    if isinstance(e, OSError):
        what = e.strerror or str(e)
        return f"{e.filename}: {what}" if e.filename else what
    if isinstance(e, asyncssh.DisconnectError):
        return e.reason or type(e).__name__
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def host_key_why(target: Any) -> str:
    """An unknown host and a changed host key, told apart by whether known_hosts lists the host."""
    import asyncssh

    path = target.known_hosts or os.path.expanduser("~/.ssh/known_hosts")
    listed = False
    try:
        keys = asyncssh.read_known_hosts(path).match(target.host, target.host, target.port)[0]
        listed = bool(keys)
    except (OSError, ValueError, asyncssh.KeyImportError):
        pass
    if listed:
        return (f"host key changed: {path} holds another key for this host; refused (if the host was "
                f"reinstalled, replace its line there)")
    return f"host key not trusted: this host is not in {path}; refused (add it with ssh-keyscan after checking it)"


async def file_error(e: Any, path: str, sftp: Any) -> OSError:
    """The OSError a local open/stat/rename of path would raise, from an SFTP error."""
    import asyncssh

    code = {asyncssh.FX_NO_SUCH_FILE: errno.ENOENT, asyncssh.FX_NO_SUCH_PATH: errno.ENOENT,
            asyncssh.FX_PERMISSION_DENIED: errno.EACCES, asyncssh.FX_FILE_ALREADY_EXISTS: errno.EEXIST,
            asyncssh.FX_NOT_A_DIRECTORY: errno.ENOTDIR, asyncssh.FX_FILE_IS_A_DIRECTORY: errno.EISDIR,
            asyncssh.FX_NO_SPACE_ON_FILESYSTEM: errno.ENOSPC, asyncssh.FX_WRITE_PROTECT: errno.EROFS,
            }.get(e.code)
    if code is None and e.code == asyncssh.FX_FAILURE:
        try:  # OpenSSH answers a read of a directory with a bare "failure"
            if await sftp.isdir(path):
                code = errno.EISDIR
        except asyncssh.SFTPError:
            pass
    if code is None:
        return OSError(errno.EIO, e.reason or "SFTP failure", path)
    return OSError(code, os.strerror(code), path)  # OSError(errno, ...) is the matching subclass


_UNIX_ERRORS = (("No such file", errno.ENOENT), ("Connection refused", errno.ECONNREFUSED),
                ("Permission denied", errno.EACCES), ("Not a socket", errno.ENOTSOCK),
                ("Socket operation on non-socket", errno.ENOTSOCK))


async def open_unix(conn: Any, path: str, sftp: Callable[[], Awaitable[Any]]) -> tuple[Any, Any]:
    """A direct-streamlocal channel to a unix socket on the host; OSError as a local connect raises it.
    OpenSSH answers every failed connect with a bare "open failed": a stat over SFTP tells a missing socket."""
    import asyncssh

    try:
        return await conn.open_unix_connection(path)
    except asyncssh.ChannelOpenError as e:
        if "connection closed" in str(e.reason):
            raise
        reason = str(e.reason)
        for text, code in _UNIX_ERRORS:
            if text.lower() in reason.lower():
                raise OSError(code, os.strerror(code), path) from None
        if e.code == asyncssh.OPEN_CONNECT_FAILED:
            try:
                await (await sftp()).stat(path)
            except asyncssh.SFTPNoSuchFile:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path) from None
            except asyncssh.SFTPError:
                pass
        if e.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED:
            raise PermissionError(errno.EACCES, f"the host's sshd refuses unix socket forwarding "
                                                f"(AllowStreamLocalForwarding): {reason}", path) from None
        raise ConnectionRefusedError(errno.ECONNREFUSED, os.strerror(errno.ECONNREFUSED), path) from None


def exit_code(proc: Any) -> int:
    """The exit status, or minus the signal that ended it (as subprocess reports it)."""
    code = proc.returncode
    return -1 if code is None else code
