"""`asrtop` (no sub-command) and `asrtop demo`: load the config, build the parts, run the console."""

from __future__ import annotations

import sys
from typing import Any

from asrtop.exitcodes import BAD_INPUT, OK


def _fail(msg: str) -> int:
    print(f"asrtop: {msg}", file=sys.stderr)
    return BAD_INPUT


def build_audit(config: Any) -> Any:
    """The control engineer's audit log for config.audit_log (None when the module is not there)."""
    try:
        from asrtop import audit as audit_mod
    except ImportError:
        return None
    for name in ("AuditLog", "Audit"):
        cls = getattr(audit_mod, name, None)
        if cls is not None:
            return cls(config.audit_log)
    return audit_mod if hasattr(audit_mod, "recent") else None


def build_app(args: Any, config: Any, app_class: Any = None) -> Any:
    """Everything the console needs, from a loaded ClusterConfig. Raises ValueError on bad setup.

    `app_class`: an AsrtopApp subclass (benchmarks hook the first frame that way)."""
    from asrtop.balancers.factory import build_balancers
    from asrtop.control import Controller
    from asrtop.sources.factory import build_fleet_source
    from asrtop.tui.app import AsrtopApp

    read_only = bool(getattr(args, "read_only", False)) or config.read_only
    balancers = build_balancers(config)
    source = build_fleet_source(config, balancers, getattr(args, "prometheus", None))
    audit = build_audit(config)
    controller = Controller(config, balancers, source, audit, read_only)
    facts = getattr(source, "facts", None)
    model_files = getattr(facts, "fetch_model_files", None)
    max_weight = min((b.max_weight for b in balancers), default=256)
    min_weight = 1 if any(b.kind == "nginx" for b in balancers) else 0  # nginx has no weight 0
    return (app_class or AsrtopApp)(source, controller, cluster=config.name, refresh=config.refresh, read_only=read_only,
                     min_ready=config.min_ready, audit=audit, model_files=model_files, max_weight=max_weight,
                                    min_weight=min_weight)


def run_tui(args: Any) -> int:
    from asrtop.config import ConfigError, load_config

    try:
        config = load_config(getattr(args, "config", None))
    except ConfigError as e:
        return _fail(str(e))
    try:
        app = build_app(args, config)
    except (ConfigError, ValueError) as e:
        return _fail(str(e))
    app.run()
    return app.return_code or OK
