"""TCP sockets on the ASR port and the stream port, read once per collection round: the listening sockets'
inodes, the established server-side connections (their inodes: collectors/streams.py ages them) and, when the
service is not on this host, our side of the connections to it.

Linux's sock_diag netlink interface is asked ONE dump per round for every port and both IP families, with an
in-kernel filter (bytecode: local port in the set, or remote port == the client port) so that only matching
sockets are copied out. The kernel walks its whole established hash table (sized by RAM, empty buckets
included: 262,144 buckets, ~1.5 ms, on a 24 GiB machine) for every dump whatever the filter: that walk is the
round's main kernel cost, so it is made once, not once per port, family and state. The old inet_diag request
(TCPDIAG_GETSOCK) dumps IPv4 and IPv6 in one walk; a kernel without it gets one SOCK_DIAG_BY_FAMILY dump per
family. /proc/net/tcp{,6} remains as the fallback (formatted as text for every socket on each read: ~14 ms of
kernel time at 6,500 sockets).

The walk is skipped in a round where no TCP connection of this host can have become or stopped being
established since the last one (TcpCounters: the kernel's own counters, read in tens of microseconds); only
the small listening table is dumped then, and the last walk's established sockets stand. An idle node walks
once every REWALK_AFTER seconds instead of every round; a node whose connections come and go walks every round
as before.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

NETLINK_SOCK_DIAG = 4
TCPDIAG_GETSOCK, SOCK_DIAG_BY_FAMILY = 18, 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_BC_JMP = 1
INET_DIAG_BC_S_EQ, INET_DIAG_BC_D_EQ = 11, 12  # kernel >= 4.16
TCP_ESTABLISHED, TCP_LISTEN = 1, 10
_NLMSG = struct.Struct("=IHHII")
_DIAG_HEAD = struct.Struct("=BB")  # inet_diag_msg: family, state (then timer, retrans, the socket id)
_DIAG_PORTS = struct.Struct("!HH")  # the socket id's source and destination ports (network order), at +4
_DIAG_INODE = struct.Struct("=I")  # at +68, after expires, rqueue, wqueue, uid
_NO_COMPAT = (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOENT, errno.EPROTONOSUPPORT)
_RECV_BYTES = 32768  # one dump of a few matching sockets fits; a long one takes several reads
REWALK_AFTER = 10.0  # seconds: the longest one walk's established sockets stand (TcpCounters' blind spot)


@dataclass(frozen=True)
class PortSockets:
    """One read of the TCP sockets on some ports (what `sample` was asked for; the rest is empty)."""

    listeners: dict[int, int] = field(default_factory=dict)  # local port -> a listening socket's inode
    server: dict[int, list[int]] = field(default_factory=dict)  # local port -> established inodes (0: not accepted)
    client: dict[int, int] = field(default_factory=dict)  # remote port -> our established connections to it

    def scan(self, port: int) -> tuple[int | None, int, int]:
        """(listen inode, established server-side, established client-side) on `port`."""
        return self.listeners.get(port), len(self.server.get(port, ())), self.client.get(port, 0)

    def established(self, port: int) -> list[int]:
        """Inodes of the established server-side connections on `port`. A connection still in the accept
        queue has no inode (0) and is not a stream yet: the service has not taken it."""
        return [inode for inode in self.server.get(port, ()) if inode]


def _collect(rows: Iterable[tuple[int, int, int, int, int]], listen: Iterable[int], established: Iterable[int],
             client: int | None) -> PortSockets:
    """PortSockets from (family, state, local port, remote port, inode) rows of any ports and states: only those
    asked for are kept. An IPv4 listener is preferred over an IPv6 one on the same port, so the same one is
    chosen every round (its owner is looked up once per inode)."""
    listen, wanted = set(listen), set(established)
    first: dict[int, tuple[bool, int]] = {}  # port -> (not IPv4, inode)
    server: dict[int, list[int]] = {p: [] for p in wanted}
    clients = 0
    for family, state, lport, rport, inode in rows:
        if state == TCP_LISTEN:
            if lport in listen:
                rank = family != socket.AF_INET
                if lport not in first or rank < first[lport][0]:
                    first[lport] = (rank, inode)
        elif state == TCP_ESTABLISHED:
            if lport in wanted:
                server[lport].append(inode)
            elif rport == client:
                clients += 1
    return PortSockets({p: inode for p, (_, inode) in first.items()}, server,
                       {client: clients} if client is not None else {})


_TCP_COUNTERS = (b"ActiveOpens", b"PassiveOpens", b"AttemptFails", b"EstabResets", b"CurrEstab")


class TcpCounters:
    """This network namespace's TCP transition counters, from /proc/net/snmp's Tcp line: (ActiveOpens,
    PassiveOpens, AttemptFails, EstabResets, CurrEstab), or None when they cannot be read.

    The kernel keeps them for every TCP socket; a read formats ~100 counters (~20 us here), it walks no table.
    A connection that becomes established moves ActiveOpens or PassiveOpens (our side or the peer's opened it)
    and CurrEstab; one that leaves ESTABLISHED moves CurrEstab, or EstabResets on a reset. One exception:
    ESTABLISHED -> CLOSE_WAIT (the peer closed first) moves nothing on kernels that count CLOSE_WAIT in
    CurrEstab, as RFC 1213 has it (this one does: measured). The service closes its side soon after, which
    moves CurrEstab; a service that never does is caught by the walk made every REWALK_AFTER seconds anyway.
    """

    def __init__(self, proc_root: str = "/proc"):
        self.path = os.path.join(proc_root, "net", "snmp")
        self._fd: int | None = None
        self._where: tuple[int, ...] | None = None  # the counters' columns, from the header line (read once)

    def read(self) -> tuple[int, ...] | None:
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            data = os.pread(self._fd, 16384, 0)  # a seq_file: each read at offset 0 formats it anew
            head = data.index(b"\nTcp: ")
            values = data.index(b"\nTcp: ", head + 1)
            if self._where is None:
                names = data[head + 6:values].split()
                self._where = tuple(names.index(name) for name in _TCP_COUNTERS)
            numbers = data[values + 6:data.find(b"\n", values + 1)].split()
            return tuple(int(numbers[i]) for i in self._where)
        except (OSError, ValueError, IndexError):
            return None


@dataclass
class _Walk:
    """One walk's established rows for the request `key`, the counters read just before it, and what our own
    connections (the probe's, closed since) have added to them: while the counters read that, the rows stand."""

    key: tuple
    counters: tuple[int, ...]
    rows: list[tuple[int, int, int, int, int]]
    at: float
    own_active: int = 0
    own_passive: int = 0

    def expected(self) -> tuple[int, ...]:
        active, passive, *rest = self.counters
        return (active + self.own_active, passive + self.own_passive, *rest)


def port_filter(local_ports: Iterable[int], remote_port: int | None = None) -> bytes:
    """inet_diag bytecode accepting a socket whose local port is one of `local_ports` or whose remote port is
    `remote_port`: each test but the last is followed by a jump to the end (accept); a failed test falls
    through to the next one; the last one's failure jumps past the end (reject). The kernel's audit walks the
    program along the "yes" offsets, so each of them goes to the next instruction."""
    tests = [(INET_DIAG_BC_S_EQ, p) for p in sorted(set(local_ports))]
    if remote_port is not None:
        tests.append((INET_DIAG_BC_D_EQ, remote_port))
    if not tests:
        raise ValueError("a port filter needs at least one port")
    ops, total = [], 12 * len(tests) - 4
    for i, (code, port) in enumerate(tests):
        ops.append(struct.pack("=BBHBBH", code, 8, 12, 0, 0, port))  # {code, yes, no}, then {0, 0, port}
        if i < len(tests) - 1:
            to_end = total - (12 * i + 8)
            ops.append(struct.pack("=BBH", INET_DIAG_BC_JMP, 4, to_end))  # JMP always takes "no": accept
    body = b"".join(ops)
    return struct.pack("=HH", 4 + len(body), INET_DIAG_REQ_BYTECODE) + body


class SockDiag:
    """TCP sockets on some ports via netlink sock_diag: at most one walk of the established table per `sample`,
    none while TcpCounters show no connection came or went; one kept netlink socket."""

    def __init__(self, proc_root: str = "/proc", compat: bool = True, counters: TcpCounters | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.root = proc_root
        self._seq = 0
        self._ok: bool | None = None
        self._compat = compat  # both families in one dump (TCPDIAG_GETSOCK); off when the kernel refuses it
        self._sock: socket.socket | None = None
        self._buf = bytearray(_RECV_BYTES)
        self._lock = threading.Lock()  # one dump at a time on the kept socket
        self.counters = counters if counters is not None else TcpCounters(proc_root)
        self.clock = clock
        self._walk: _Walk | None = None  # the last walk, while its rows may stand
        self.dumps = 0  # dumps asked for: tests count them
        self.walks = 0  # of which walks of the established table (the costly ones)

    def available(self) -> bool:
        if self._ok is None:
            try:
                self.sample(listen=(1,))
                self._ok = True
            except (OSError, AttributeError):  # not Linux, no permission, kernel without S_EQ
                self._ok = False
        return self._ok

    def sample(self, listen: Iterable[int] = (), established: Iterable[int] = (),
               client: int | None = None) -> PortSockets:
        """The listeners on the `listen` ports, the established server-side connections on the `established`
        ports and the count of our established connections to the `client` port, in one dump; the established
        part is the last walk's while no connection of this host came or went since (see TcpCounters)."""
        listen, established = tuple(listen), tuple(established)
        with self._lock:
            return _collect(self._sample_rows(listen, established, client), listen, established, client)

    def _sample_rows(self, listen: tuple[int, ...], established: tuple[int, ...],
                     client: int | None) -> list[tuple[int, int, int, int, int]]:
        if not (established or client):
            return self._listening(listen)
        key = (established, client)
        walk, now = self._walk, self.clock()
        counters = self.counters.read()  # before any walk: what moves during it is seen next round
        if walk is not None and walk.key == key and now - walk.at < REWALK_AFTER \
                and counters is not None and counters == walk.expected():
            return walk.rows + self._listening(listen)  # the listening table alone: no walk of the established one
        self._walk = None
        states = (1 << TCP_LISTEN if listen else 0) | 1 << TCP_ESTABLISHED
        rows = self._rows(states, port_filter(listen + established, client))
        self.walks += 1
        kept = [row for row in rows if row[1] == TCP_ESTABLISHED]
        # a connection still in the accept queue (inode 0) gets its inode without a counter moving
        if counters is not None and all(row[4] for row in kept if row[2] in established):
            self._walk = _Walk(key, counters, kept, now)
        return rows

    def own_connections(self, count: int, local: bool) -> None:
        """We (the probe) opened `count` connections, closed again, to this host (`local`: both ends move the
        counters) or another: the counters' move they make does not void the last walk."""
        with self._lock:
            if self._walk is not None:
                self._walk.own_active += count
                self._walk.own_passive += count if local else 0

    def _listening(self, listen: tuple[int, ...]) -> list[tuple[int, int, int, int, int]]:
        """The listeners on the `listen` ports: the small listening table, no walk of the established one."""
        return self._rows(1 << TCP_LISTEN, port_filter(listen)) if listen else []

    def _rows(self, states: int, bytecode: bytes) -> list[tuple[int, int, int, int, int]]:
        """One dump (one per family on a kernel without the old request); the caller holds the lock."""
        if self._compat:
            try:
                return self._dump(TCPDIAG_GETSOCK, socket.AF_UNSPEC, states, bytecode)
            except OSError as exc:  # a kernel without the old request: one dump per family from now on
                if exc.errno not in _NO_COMPAT:
                    raise
                self._compat = False
        return [row for family in (socket.AF_INET, socket.AF_INET6)
                for row in self._dump(SOCK_DIAG_BY_FAMILY, family, states, bytecode)]

    def _socket(self) -> socket.socket:
        if self._sock is None:
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
            s.settimeout(2.0)
            self._sock = s
        return self._sock

    def _dump(self, kind: int, family: int, states: int, bytecode: bytes) -> list[tuple[int, int, int, int, int]]:
        """[(family, state, local port, remote port, inode)] of the TCP sockets in `states` that pass the
        filter. TCPDIAG_GETSOCK takes the old request (family ignored: both), SOCK_DIAG_BY_FAMILY the v2 one."""
        self.dumps += 1
        self._seq += 1
        seq = self._seq
        if kind == TCPDIAG_GETSOCK:  # inet_diag_req: family, src_len, dst_len, ext, sockid, states, dbs
            req = struct.pack("=BBBB", family, 0, 0, 0) + bytes(48) + struct.pack("=II", states, 0)
        else:  # inet_diag_req_v2: family, protocol, ext, pad, states, sockid
            req = struct.pack("=BBBxI", family, socket.IPPROTO_TCP, 0, states) + bytes(48)
        req += bytecode
        msg = _NLMSG.pack(_NLMSG.size + len(req), kind, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + req
        try:
            return self._exchange(msg, kind, seq)
        except BaseException:
            self._close()  # a dump left half read must not answer the next one
            raise

    def _exchange(self, msg: bytes, kind: int, seq: int) -> list[tuple[int, int, int, int, int]]:
        s, buf = self._socket(), self._buf
        s.sendto(msg, (0, 0))
        out = []
        while True:
            n = s.recv_into(buf)
            off = 0
            while off + _NLMSG.size <= n:
                length, mtype, _, mseq, _ = _NLMSG.unpack_from(buf, off)
                if length < _NLMSG.size:
                    return out
                if mseq == seq:
                    if mtype == NLMSG_DONE:
                        return out
                    if mtype == NLMSG_ERROR:
                        err = -struct.unpack_from("=i", buf, off + _NLMSG.size)[0]
                        raise OSError(err, os.strerror(err))
                    if mtype == kind:
                        body = off + _NLMSG.size
                        family, state = _DIAG_HEAD.unpack_from(buf, body)
                        lport, rport = _DIAG_PORTS.unpack_from(buf, body + 4)
                        out.append((family, state, lport, rport, _DIAG_INODE.unpack_from(buf, body + 68)[0]))
                off += (length + 3) & ~3

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def scan(self, port: int) -> tuple[int | None, int, int]:
        """(listen inode, established server-side, established client-side) on `port`, in one dump."""
        return self.sample(listen=(port,), established=(port,), client=port).scan(port)

    def listener(self, port: int) -> int | None:
        """The listening socket's inode alone: the small listening table, no walk of the established one."""
        return self.sample(listen=(port,)).listeners.get(port)

    def established(self, port: int) -> list[int]:
        return self.sample(established=(port,)).established(port)

    def owner_of(self, inode: int) -> int | None:
        return owner_of(self.root, inode)


class ProcNetTcp:
    """Fallback: /proc/net/tcp and tcp6 (root injectable for tests), each read once per sample, lines
    pre-filtered by the ports' hex."""

    def __init__(self, proc_root: str = "/proc"):
        self.root = proc_root

    def available(self) -> bool:
        return os.path.exists(os.path.join(self.root, "net", "tcp"))

    def _rows(self, ports: Iterable[int]):
        """(family, state, local port, remote port, inode) of the lines of tcp and tcp6 that mention one of
        the ports (C-speed search for the rest)."""
        needles = [b":%04X " % p for p in set(ports)]
        for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
            try:
                with open(os.path.join(self.root, "net", name), "rb") as f:
                    data = f.read()
            except OSError:
                continue
            starts = set()
            for needle in needles:
                pos = data.find(needle)
                while pos != -1:
                    starts.add(data.rfind(b"\n", 0, pos) + 1)
                    end = data.find(b"\n", pos)
                    pos = -1 if end == -1 else data.find(needle, end)
            for start in sorted(starts):
                end = data.find(b"\n", start)
                fields = data[start:len(data) if end == -1 else end].split()
                if len(fields) >= 10:
                    yield (family, int(fields[3], 16), int(fields[1].rsplit(b":", 1)[1], 16),
                           int(fields[2].rsplit(b":", 1)[1], 16), int(fields[9]))

    def sample(self, listen: Iterable[int] = (), established: Iterable[int] = (),
               client: int | None = None) -> PortSockets:
        listen, established = tuple(listen), tuple(established)
        ports = listen + established + ((client,) if client is not None else ())
        return _collect(self._rows(ports) if ports else (), listen, established, client)

    def own_connections(self, count: int, local: bool) -> None:
        """Every read is whole here: nothing to keep apart."""

    def scan(self, port: int) -> tuple[int | None, int, int]:
        return self.sample(listen=(port,), established=(port,), client=port).scan(port)

    def listener(self, port: int) -> int | None:
        return self.sample(listen=(port,)).listeners.get(port)

    def established(self, port: int) -> list[int]:
        return self.sample(established=(port,)).established(port)

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
