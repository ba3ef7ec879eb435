"""TCP sockets on the ASR port: the listening socket's inode and the established connection count; on the
stream port, the inodes of the established server-side connections (collectors/streams.py ages them).

Linux's sock_diag netlink interface is asked with an in-kernel port filter, so the cost does not grow with
the number of sockets on the host (/proc/net/tcp is formatted as text for every socket on each read:
~14 ms of kernel time at 6,500 sockets). /proc/net/tcp{,6} remains as the fallback.
"""

from __future__ import annotations

import os
import socket
import struct

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_BC_S_EQ, INET_DIAG_BC_D_EQ = 11, 12  # kernel >= 4.16
TCP_ESTABLISHED, TCP_LISTEN = 1, 10
_NLMSG = struct.Struct("=IHHII")
_DIAG_MSG = struct.Struct("=BBBB48xIIIII")  # family, state, timer, retrans, sockid, expires, rq, wq, uid, inode


def _port_filter(code: int, port: int) -> bytes:
    # op {code, yes -> end of program (accept), no -> past the end (reject)}, then {0, 0, port}
    ops = struct.pack("=BBH", code, 8, 12) + struct.pack("=BBH", 0, 0, port)
    return struct.pack("=HH", 4 + len(ops), INET_DIAG_REQ_BYTECODE) + ops


class SockDiag:
    """(listen inode, established server-side, established client-side) for one port, via netlink."""

    def __init__(self, proc_root: str = "/proc"):
        self.root = proc_root
        self._seq = 0
        self._ok: bool | None = None

    def available(self) -> bool:
        if self._ok is None:
            try:
                self._query(socket.AF_INET, 1 << TCP_LISTEN, INET_DIAG_BC_S_EQ, 1)
                self._ok = True
            except (OSError, AttributeError):  # not Linux, no permission, kernel without S_EQ
                self._ok = False
        return self._ok

    def _query(self, family: int, states: int, code: int, port: int) -> list[tuple[int, int]]:
        """[(state, inode)] of TCP sockets of `family` in `states` matching the port filter."""
        self._seq += 1
        bc = _port_filter(code, port)
        req = struct.pack("=BBBxI", family, socket.IPPROTO_TCP, 0, states) + bytes(48) + bc
        msg = _NLMSG.pack(_NLMSG.size + len(req), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, self._seq, 0) + req
        out = []
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as s:
            s.settimeout(2.0)
            s.sendto(msg, (0, 0))
            while True:
                data = s.recv(65536)
                off = 0
                while off + _NLMSG.size <= len(data):
                    length, mtype, _, _, _ = _NLMSG.unpack_from(data, off)
                    if length < _NLMSG.size:
                        return out
                    if mtype == NLMSG_DONE:
                        return out
                    if mtype == NLMSG_ERROR:
                        err = -struct.unpack_from("=i", data, off + _NLMSG.size)[0]
                        raise OSError(err, os.strerror(err))
                    if mtype == SOCK_DIAG_BY_FAMILY:
                        _, state, _, _, _, _, _, _, inode = _DIAG_MSG.unpack_from(data, off + _NLMSG.size)
                        out.append((state, inode))
                    off += (length + 3) & ~3

    def scan(self, port: int) -> tuple[int | None, int, int]:
        # LISTEN alone reads only the kernel's small listening table; the established table (sized by RAM, and
        # walked whole whatever the filter) is read only in the families that listen: accepted connections
        # take their listener's family (a dual-stack "::" listener's IPv4 clients are AF_INET6 sockets).
        listen, families = None, []
        for family in (socket.AF_INET, socket.AF_INET6):
            for _, inode in self._query(family, 1 << TCP_LISTEN, INET_DIAG_BC_S_EQ, port):
                listen = listen or inode
                if family not in families:
                    families.append(family)
        server = sum(len(self._query(f, 1 << TCP_ESTABLISHED, INET_DIAG_BC_S_EQ, port)) for f in families)
        client = 0
        if listen is None:  # the ASR service is not on this host: count our side of connections to it
            client = sum(len(self._query(f, 1 << TCP_ESTABLISHED, INET_DIAG_BC_D_EQ, port))
                         for f in (socket.AF_INET, socket.AF_INET6))
        return listen, server, client

    def listener(self, port: int) -> int | None:
        """The listening socket's inode alone: the small listening table, no walk of the established one."""
        return next((inode for family in (socket.AF_INET, socket.AF_INET6)
                     for _, inode in self._query(family, 1 << TCP_LISTEN, INET_DIAG_BC_S_EQ, port)), None)

    def established(self, port: int) -> list[int]:
        """Inodes of the established server-side connections on `port` (local port == port). A connection
        still in the accept queue has no inode (0) and is not a stream yet: the service has not taken it."""
        return [inode for family in (socket.AF_INET, socket.AF_INET6)
                for _, inode in self._query(family, 1 << TCP_ESTABLISHED, INET_DIAG_BC_S_EQ, port) if inode]

    def owner_of(self, inode: int) -> int | None:
        return owner_of(self.root, inode)


class ProcNetTcp:
    """Fallback: /proc/net/tcp and tcp6 (root injectable for tests), lines pre-filtered by the port's hex."""

    def __init__(self, proc_root: str = "/proc"):
        self.root = proc_root

    def available(self) -> bool:
        return os.path.exists(os.path.join(self.root, "net", "tcp"))

    def _lines(self, port: int):
        """Split lines of tcp and tcp6 that mention the port (C-speed search for the rest)."""
        needle = b":%04X " % port
        for name in ("tcp", "tcp6"):
            try:
                with open(os.path.join(self.root, "net", name), "rb") as f:
                    data = f.read()
            except OSError:
                continue
            pos = data.find(needle)
            while pos != -1:
                start = data.rfind(b"\n", 0, pos) + 1
                end = data.find(b"\n", pos)
                end = len(data) if end == -1 else end
                fields = data[start:end].split()
                pos = data.find(needle, end)
                if len(fields) >= 10:
                    yield fields

    def scan(self, port: int) -> tuple[int | None, int, int]:
        listen_inode, server, client = None, 0, 0
        for fields in self._lines(port):
            local_port = int(fields[1].rsplit(b":", 1)[1], 16)
            state = fields[3]
            if state == b"0A" and local_port == port and listen_inode is None:
                listen_inode = int(fields[9])
            elif state == b"01":
                if local_port == port:
                    server += 1
                elif int(fields[2].rsplit(b":", 1)[1], 16) == port:
                    client += 1
        return listen_inode, server, client

    def listener(self, port: int) -> int | None:
        return self.scan(port)[0]

    def established(self, port: int) -> list[int]:
        return [int(f[9]) for f in self._lines(port)
                if f[3] == b"01" and int(f[1].rsplit(b":", 1)[1], 16) == port and f[9] != b"0"]

    def owner_of(self, inode: int) -> int | None:
        return owner_of(self.root, inode)


def owner_of(proc_root: str, inode: int) -> int | None:
    """PID holding socket `inode` (walks /proc/*/fd; None when not visible to us). Called once per inode."""
    target = f"socket:[{inode}]"
    for entry in os.scandir(proc_root):
        if not entry.name.isdigit():
            continue
        fd_dir = os.path.join(proc_root, entry.name, "fd")
        try:
            for fd in os.listdir(fd_dir):
                try:
                    if os.readlink(os.path.join(fd_dir, fd)) == target:
                        return int(entry.name)
                except OSError:
                    continue
        except OSError:
            continue
    return None


def default_table(proc_root: str = "/proc"):
    diag = SockDiag(proc_root)
    return diag if diag.available() else ProcNetTcp(proc_root)
