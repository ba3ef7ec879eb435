"""Is a socket listening on an address of a Linux host? Read from that host's /proc/net tables.

For a balancer on another host a TCP connect from here proves nothing about it (it would reach this
machine's loopback, or a firewall), so the check is made on the host: /proc/net/tcp, tcp6 and unix list
every socket of the network namespace, listening ones in state 0A (TCP) or with the accept flag (unix).
Addresses there are hex words in the host's byte order; both orders are accepted, so a big-endian host
reads right too. Listening sockets come first in the tables, but the whole table is read: on a host with
many connections that is ~150 bytes per connection per check.
"""

from __future__ import annotations

import ipaddress

from asrtop.balancers.host import Host

TCP_LISTEN = "0A"
UNIX_ACCEPTING = 0x10000  # __SO_ACCEPTCON


def listening(host: Host, address: str) -> bool:
    """"host:port", "[v6]:port" or "unix:/path" (nginx_live's form); a host name matches any address on the
    port. OSError when the host has no such table (not Linux)."""
    if address.startswith("unix:"):
        return _unix_listening(host.read_bytes("/proc/net/unix").decode("utf-8", "replace"), address[5:])
    name, _, port_text = address.rpartition(":")
    try:
        ip = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        ip = None
    tables = ["/proc/net/tcp6"] if ip is not None and ip.version == 6 else ["/proc/net/tcp", "/proc/net/tcp6"]
    port = int(port_text)
    for table in tables:  # tcp6 for a v4 address: a dual-stack `::` socket takes it too
        if tcp_listening(host.read_bytes(table).decode("ascii", "replace"), ip, port):
            return True
    return False


def tcp_listening(table: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None, port: int) -> bool:
    """Does this /proc/net/tcp or tcp6 text list a listening socket that accepts ip:port?"""
    wanted: set[bytes] = set()
    if ip is not None:
        packed = ip.packed
        wanted = {packed, ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + packed).packed} if ip.version == 4 \
            else {packed}
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != TCP_LISTEN:
            continue
        addr_hex, _, port_hex = fields[1].partition(":")
        try:
            if int(port_hex, 16) != port:
                continue
            raw = bytes.fromhex(addr_hex)
        except ValueError:
            continue
        if ip is None or not any(raw) or _either_order(raw) & wanted:
            return True
    return False


def _either_order(raw: bytes) -> set[bytes]:
    """The address as printed (32-bit words in host order) in both byte orders."""
    swapped = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return {raw, swapped}


def _unix_listening(table: str, path: str) -> bool:
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and " ".join(fields[7:]) == path:
            try:
                if int(fields[3], 16) & UNIX_ACCEPTING:
                    return True
            except ValueError:
                continue
    return False
