"""The Runtime API of a socket on another host (haproxy_api.HostRuntimeAPI): chosen for a host that is not this
machine, every failure one line naming the balancer, the socket and the host. The real thing (sshd, HAProxy)
is in tests/integration/test_haproxy_ssh.py; here a Host whose exchange fails as asked."""

from __future__ import annotations

import pytest

from asrtop.balancers.base import BalancerUnreachable
from asrtop.balancers.haproxy_api import HostRuntimeAPI, RuntimeAPI, runtime_api
from asrtop.balancers.host import LOCAL, HostUnreachable


class FailingHost:
    label, transport = "ssh ops@lb2:22", "ssh"

    def __init__(self, error: BaseException | None = None, answer: bytes = b""):
        self.error, self.answer, self.sent = error, answer, []

    def unix_exchange(self, path: str, request: bytes, timeout: float) -> bytes:
        self.sent.append((path, request, timeout))
        if self.error is not None:
            raise self.error
        return self.answer


def test_the_local_socket_keeps_its_direct_path_and_another_host_goes_through_it():
    assert type(runtime_api("lb1", "/run/haproxy/admin.sock", LOCAL)) is RuntimeAPI
    host = FailingHost(answer=b"1\n# be_id\n")
    api = runtime_api("lb2", "unix@/run/haproxy/admin.sock", host, 3.0)  # type: ignore[arg-type]
    assert isinstance(api, HostRuntimeAPI) and (api.kind, api.target) == ("unix", "/run/haproxy/admin.sock")
    assert api.command("show servers state asr") == "1\n# be_id\n"
    assert host.sent == [("/run/haproxy/admin.sock", b"show servers state asr\n", 3.0)]
    with pytest.raises(ValueError, match="tcp HAProxy socket .* cannot be reached over ssh"):
        runtime_api("lb2", "127.0.0.1:9999", host)  # type: ignore[arg-type]


@pytest.mark.parametrize("error, line", [
    (HostUnreachable("ssh ops@lb2:22: connection refused"),
     "lb2: ssh ops@lb2:22: connection refused (during `show stat`)"),
    (FileNotFoundError(2, "No such file"), "lb2: HAProxy socket /s on ssh ops@lb2:22 does not exist; is HAProxy "
                                           "running there, and is it the path of `stats socket` in its haproxy.cfg?"),
    (ConnectionRefusedError(111, "refused"), "lb2: connection refused by HAProxy socket /s on ssh ops@lb2:22; is "
                                             "HAProxy running?"),
    (PermissionError(13, "denied"), "lb2: permission denied opening HAProxy socket /s on ssh ops@lb2:22; log in as "
                                    "a user allowed to use it (see `stats socket ... mode/user/group`)"),
    (TimeoutError("slow"), "lb2: HAProxy socket /s on ssh ops@lb2:22 did not answer `show stat` within 2s"),
])
def test_each_failure_is_one_line_naming_balancer_socket_and_host(error, line):
    api = HostRuntimeAPI("lb2", "/s", FailingHost(error))  # type: ignore[arg-type]
    with pytest.raises(BalancerUnreachable) as info:
        api.command("show stat")
    assert str(info.value) == line
