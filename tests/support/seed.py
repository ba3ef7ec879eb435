"""The seed article's nginx block (shared/seeds/000_..., first article), the config asrtop must handle as written."""

from pathlib import Path

# shared/ lies beside the checkout (developers' machines and CI alike)
SEED = Path(__file__).resolve().parents[3] / "shared" / "seeds" / "000_5d28e8209ec2be7c.txt"
SEED_LINE = ("upstream fun_asr_backend { least_conn; server 192.168.1.10:7860 weight=3 max_fails=2 "
             "fail_timeout=30s; server 192.168.1.11:7860 weight=3 max_fails=2 fail_timeout=30s; server "
             "192.168.1.12:7860 backup; } server { listen 80; server_name asr-api.example.com; location / { "
             "proxy_pass http://fun_asr_backend; proxy_set_header Host $host; proxy_set_header X-Real-IP "
             "$remote_addr; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_set_header "
             "X-Forwarded-Proto $scheme; proxy_read_timeout 300s; proxy_send_timeout 300s; } location /healthz "
             "{ return 200 'healthy\\n'; add_header Content-Type text/plain; } }")
SEED_ADDRS = ["192.168.1.10:7860", "192.168.1.11:7860", "192.168.1.12:7860"]


def seed_line() -> str:
    """The line verbatim from the article when it is here (and checked against our copy), else our copy."""
    if SEED.exists():
        line = next(x for x in SEED.read_text().splitlines() if x.startswith("upstream fun_asr_backend"))
        assert line == SEED_LINE, "the seed article's nginx block changed: update tests/support/seed.py"
        return line
    return SEED_LINE
