"""asrtop-agent: a read-only sidecar that reports GPU, host, ASR-service and model facts of one node.

Never imports `asrtop` or `textual` (checked by tests/unit/test_import_hygiene.py).
"""

__version__ = "0.1.0"
SCHEMA_VERSION = 1
DEFAULT_PORT = 10860  # outside Prometheus' fully allocated 9100-9999 exporter range
