"""`asrtop` (no sub-command) and `asrtop demo`: load the config, build the parts, run the console."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Callable

from asrtop.config import ClusterConfig
from asrtop.exitcodes import BAD_INPUT, OK

if TYPE_CHECKING:
    from asrtop.control import Controller
    from asrtop.tui.app import AsrtopApp
    from asrtop.tui.rollout_launch import DetachedRollout


def _fail(msg: str) -> int:
    print(f"asrtop: {msg}", file=sys.stderr)
    return BAD_INPUT


def build_app(args: argparse.Namespace, config: ClusterConfig, app_class: type[AsrtopApp] | None = None) -> AsrtopApp:
    """Everything the console needs, from a loaded ClusterConfig. Raises ValueError on bad setup.

    `app_class`: an AsrtopApp subclass (benchmarks hook the first frame that way)."""
    from asrtop.balancers.factory import build_balancers
    from asrtop.control import Controller
    from asrtop.control.audit import AuditLog
    from asrtop.control.drift import ReloadWatch
    from asrtop.control.journal import ChangesInProgress, InterruptedNotes, Journal
    from asrtop.control.recover import Recovery
    from asrtop.control.rules import weight_bounds
    from asrtop.problems.rules import tracker
    from asrtop.sources.factory import build_fleet_source
    from asrtop.tui.app import AsrtopApp

    read_only = bool(getattr(args, "read_only", False)) or config.read_only
    balancers = build_balancers(config)
    audit = AuditLog(config.audit_log)
    journal = Journal.beside(config.audit_log)
    source = build_fleet_source(config, balancers, getattr(args, "prometheus", None),
                                (InterruptedNotes(journal), ReloadWatch(audit)), ChangesInProgress(journal))
    controller = Controller(config, balancers, source, audit, read_only, journal)
    recovery = Recovery(config, balancers, audit, journal, read_only)
    min_weight, max_weight = weight_bounds(balancers)
    app = (app_class or AsrtopApp)(source, controller, cluster=config.name, refresh=config.refresh,
                                   read_only=read_only, audit=audit, max_weight=max_weight, min_weight=min_weight,
                                   recovery=recovery, rollout=console_rollout(controller, config),
                                   problem_tracker=tracker(config.problems, config.min_ready))
    # the actions run on the UI loop (workers), so the line can go straight to a notification
    controller.on_lock_wait = recovery.on_lock_wait = lambda line: app.notify(line, severity="warning")
    return app


def console_rollout(controller: Controller, config: ClusterConfig) -> DetachedRollout:
    """The rollout engine on the console's controller, under the [rollout] table's settings (taken as
    `asrtop rollout` takes them with no flags), launching `asrtop rollout --resume` detached."""
    from asrtop.control.rollout import RolloutEngine
    from asrtop.control.rollout_model import RolloutSettings
    from asrtop.rollout_cli import settings_from
    from asrtop.tui.rollout_launch import DetachedRollout

    try:
        settings, problem = settings_from(argparse.Namespace(hook=None, canary=None, expect_model=None), config), None
    except ValueError as e:  # e.g. [rollout] canary names a missing file: said when U is pressed
        settings, problem = RolloutSettings(tuple(config.rollout.hook)), str(e)
    return DetachedRollout(RolloutEngine(controller, config.audit_log), settings, config.path, config.audit_log,
                           problem)


def run_tui(args: argparse.Namespace, app_class: Callable[..., AsrtopApp] | None = None) -> int:
    from asrtop.config import ConfigError, load_config

    try:
        config = load_config(getattr(args, "config", None))
    except ConfigError as e:
        return _fail(str(e))
    try:
        app = build_app(args, config, app_class)  # app_class: `asrtop demo` adds its fault palette
    except (ConfigError, ValueError) as e:
        return _fail(str(e))
    app.freeze_after_first_refresh = True  # a process of its own (asrtop.tui.app_refresh)
    app.schedule_full_collections = True  # and its full collections at the quiet point (asrtop.tui.gc_schedule)
    app.fine_gil_switch = True  # and hands the GIL between its refresh thread and UI loop every ms (GIL_SWITCH)
    app.run()
    return app.return_code or OK
