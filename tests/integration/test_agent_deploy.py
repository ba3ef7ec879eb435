"""agents/deploy examples are valid: the balancer configs pass the real binaries' checks, and the agent
command lines in the systemd unit and the Kubernetes sidecar parse with the agent's own parser."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from asrtop_agent.__main__ import parse_args

DEPLOY = Path(__file__).resolve().parents[2] / "agents" / "deploy"


def test_haproxy_example_is_valid_on_both_versions(debian_haproxy_bin, wheel_haproxy_bin):
    for binary in (debian_haproxy_bin, wheel_haproxy_bin):
        out = subprocess.run([binary, "-c", "-f", str(DEPLOY / "haproxy.cfg")], capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 0, out.stdout + out.stderr
    text = (DEPLOY / "haproxy.cfg").read_text()
    assert "balance leastconn" in text and ":10861 weight 3" in text and " backup" in text


def test_nginx_example_passes_nginx_t(nginx_bin, tmp_path):
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"""
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    include {DEPLOY / "nginx-upstream.conf"};
}}
""")
    out = subprocess.run([nginx_bin, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    text = (DEPLOY / "nginx-upstream.conf").read_text()
    assert "upstream fun_asr_backend" in text and "least_conn" in text and ":10861 weight=3" in text


def test_systemd_unit_runs_a_valid_agent_command_line():
    text = (DEPLOY / "asrtop-agent.service").read_text()
    exec_start = re.search(r"^ExecStart=(.*?)(?<!\\)$", text.replace("\\\n", " "), re.M).group(1)
    argv = shlex.split(exec_start)
    assert argv[0].endswith("/asrtop-agent")
    opts = parse_args(argv[1:])
    assert opts.listen == ("0.0.0.0", 10860) and opts.proxy == ("0.0.0.0", 10861) and opts.interval == 1.0
    assert "[Install]" in text and "Restart=on-failure" in text


def test_kubernetes_sidecar_args_parse_and_ports_match():
    text = (DEPLOY / "kubernetes-sidecar.yaml").read_text()
    block = text.split('command: ["asrtop-agent"]', 1)[1].split("env:", 1)[0]
    args = [a.strip() for a in re.findall(r"^\s+- (--\S+)", block, re.M)]
    opts = parse_args([a.replace("$(POD_NAME)", "fun-asr-0") for a in args])
    assert opts.proxy[1] == 10861 and opts.listen[1] == 10860 and opts.node == "fun-asr-0"
    assert "shareProcessNamespace: true" in text and "targetPort: asr-proxy" in text
    assert 'prometheus.io/port: "10860"' in text
