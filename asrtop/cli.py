"""asrtop command line: no sub-command opens the TUI; the rest are scriptable.

Each sub-command's work lives in its own module (imported lazily so `asrtop status` stays fast and
never imports textual). Exit codes: see asrtop.exitcodes.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from asrtop import __version__
from asrtop.exitcodes import BAD_INPUT, NAGIOS_UNKNOWN


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, usage_exit: int = BAD_INPUT, **kwargs):
        super().__init__(*args, **kwargs)
        self.usage_exit = usage_exit  # `check` follows Nagios: a usage error is UNKNOWN (3)

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse makes one per argument added, and HelpFormatter imports shutil (with zlib, bz2, lzma) for the
        # terminal's width: the same width without it, so that `asrtop status` does not load them
        return self.formatter_class(prog=self.prog, width=terminal_columns() - 2)

    def error(self, message: str):  # one line + exit code for bad input, as everywhere else
        line = f"error: {_clip_echoes(message)} (see `{self.prog} --help`)"
        if self.usage_exit == NAGIOS_UNKNOWN:  # a monitor reads stdout
            print(f"UNKNOWN: {self.prog}: {line}")
        else:
            print(f"asrtop: {line}", file=sys.stderr)
        sys.exit(self.usage_exit)


def terminal_columns() -> int:
    """shutil.get_terminal_size().columns: $COLUMNS when a positive number, else stdout's terminal, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


def _clip_echoes(message: str) -> str:
    """argparse repeats what was typed ('...' quoted, or after "unrecognized arguments: "): each piece cut to a
    sane length, the message on one line."""
    from asrtop.balancers.base import clip

    head, sep, rest = message.partition("unrecognized arguments: ")
    if sep:
        message = head + sep + " ".join(clip(a) for a in rest.split(" "))
    message = re.sub(r"'((?:[^'\\]|\\.)*)'", lambda m: "'" + clip(m.group(1)) + "'", message)
    return message.replace("\n", " ")


def _common(p: argparse.ArgumentParser, top: bool = False) -> None:
    # Sub-commands take --config too; SUPPRESS keeps their default from erasing `asrtop --config F status`.
    p.add_argument("--config", metavar="FILE", default=None if top else argparse.SUPPRESS,
                   help="cluster file (default ./asrtop.toml, then ~/.config/asrtop/asrtop.toml)")
    _read_only(p, top)


def _read_only(p: argparse.ArgumentParser, top: bool = False) -> None:
    # Before or after the sub-command alike (`asrtop --read-only demo`, `asrtop demo --read-only`).
    p.add_argument("--read-only", action="store_true", default=False if top else argparse.SUPPRESS,
                   help="show the fleet; hide and refuse every action (also `read_only = true` in [cluster])")


def _action(sub, name: str, help: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help)
    _common(p)
    p.add_argument("node", metavar="NODE", help="node name as in the cluster file or the balancer")
    p.add_argument("--force", action="store_true", help="override the min_ready guardrail")
    p.add_argument("--dry-run", action="store_true", help="say what would change on which balancer, change nothing")
    return p


ROLLOUT_EPILOG = """\
Per node: drain on every balancer -> wait until empty -> run the hook -> wait for the agent to report the
ASR service up and the model hashed with the target digest -> a canary request straight to the node ->
ready on every balancer (+ --ramp). The first failure stops the rollout: that node stays out of rotation,
nothing else changes, and the message says how to go on. The state is written beside the audit log after
every stage, so --resume continues after a crash or a lost SSH session; every stage is an audit line.

The hook is an argv template split like a command line (shlex) and never run by a shell; asrtop fills in
{node} {server} {address} {host} {agent}. Its output goes to rollout-logs/<id>/<node>.log beside the audit
log. Without flags the [rollout] table of the cluster file gives the hook and the rest.

Examples:
  asrtop rollout --dry-run --hook "ssh {host} sudo /opt/asr/upgrade.sh"
  asrtop rollout node-1 node-2 --hook "ansible-playbook upgrade.yml -l {host}" --expect-model 3f9a...
  asrtop rollout --resume                 continue a stopped or crashed rollout (retries the failed stage)
  asrtop rollout --resume --from hook     redo the stopped node from its hook
  asrtop rollout --abort                  end it; nodes it left out stay out (`asrtop ready NODE`)

Output: one line per stage on a pipe, a live status line on a terminal, --json one event per line (the
last one the "end" event with the exit code). Ctrl+C (or SIGTERM, SIGHUP) stops after the stage in
progress is recorded, exit 130; press it again to stop at once.

Exit codes: 0 done (or --dry-run, --abort), 2 bad input (unknown node, no hook, bad flag), 3 refused (min_ready
over a batch, a node without an agent, another rollout running or unfinished, read-only), 8 stopped at a
node (the message names the node, the stage, the reason and the commands to resume, retry or put it back),
130 interrupted."""


def _rollout(sub) -> None:
    r = sub.add_parser("rollout", help="upgrade nodes one after the other: drain, wait, hook, verify, ready",
                       description="Roll an upgrade through the fleet node after node (NODE...: only these; none: "
                                   "every node), backups first, then the least loaded.",
                       epilog=ROLLOUT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(r)
    r.add_argument("nodes", metavar="NODE", nargs="*", help="nodes to upgrade (default: all)")
    r.add_argument("--hook", metavar='"CMD ARGS"', help="the upgrade command, an argv template (default: [rollout] hook)")
    r.add_argument("--expect-model", metavar="SHA256", help="the model digest every node must run after the hook "
                   "(default: cluster.model_sha256, else whatever the first upgraded node runs)")
    r.add_argument("--max-unavailable", type=int, metavar="N", help="nodes out at once (default 1), checked "
                   "against min_ready before anything starts")
    r.add_argument("--canary", metavar="FILE", help="WAV clip sent straight to each upgraded node (default: the "
                   "clip asrtop ships)")
    r.add_argument("--canary-text", metavar="TEXT", help="its expected transcript (default: the first node's)")
    r.add_argument("--canary-api", choices=["openai", "funasr", "gradio"], help="how the node takes audio "
                   "(default openai)")
    r.add_argument("--max-rtf", type=float, metavar="X", help="the canary fails above this real-time factor "
                   "(default 1.0)")
    r.add_argument("--ramp", type=float, metavar="S", help="after ready, weight 1 up to the node's weight over "
                   "S seconds (HAProxy; default 0: at once)")
    r.add_argument("--drain-timeout", type=float, metavar="S", help="give up waiting for a node to empty (default 600)")
    r.add_argument("--hook-timeout", type=float, metavar="S", help="kill the hook after S seconds (default 600)")
    r.add_argument("--health-timeout", type=float, metavar="S", help="give up waiting for the agent to report "
                   "the service up on the target model (default 120)")
    r.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    r.add_argument("--resume", action="store_true", help="continue the rollout in the state file")
    r.add_argument("--from", dest="from_stage", metavar="STAGE", help="with --resume: redo the stopped node from "
                   "STAGE (drain, wait, hook, health, canary, ready)")
    r.add_argument("--abort", action="store_true", help="end the unfinished rollout; change no balancer")
    r.add_argument("--json", action="store_true", help="one JSON event per line")


CHECK_EPILOG = """\
One run, for cron, Icinga/Nagios and CI: read the fleet as `asrtop status` does, evaluate the problem rules
once (thresholds from [problems] in the cluster file) and print, Nagios plugin style, a first line naming
the worst problem and its node with perfdata after `|`, then one line per problem with its action.
Rules that need a trend (leaks, ...) read it from Prometheus when the cluster has one ([cluster]
prometheus or --prometheus); without one they are listed as not evaluated (the console has the history).

Exit codes (Nagios): 0 OK, 1 WARNING, 2 CRITICAL (the worst problem's severity), 3 UNKNOWN: the check
cannot judge the fleet: a bad flag or cluster file, node facts from Prometheus that cannot be queried,
no balancer readable and no agent answering, or no node at all. UNKNOWN is said on stdout too."""


def _check(sub) -> None:
    c = sub.add_parser("check", help="one Nagios-style check of the fleet's problems (exit 0/1/2/3)",
                       description="Check the fleet once for problems: OK, WARNING or CRITICAL, as a Nagios plugin.",
                       epilog=CHECK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                       usage_exit=NAGIOS_UNKNOWN)
    _common(c)
    c.add_argument("--json", action="store_true", help='{"status", "exit", "problems", "not_evaluated", "perfdata"}')
    c.add_argument("--prometheus", metavar="URL", default=argparse.SUPPRESS,
                   help="read node facts and the rules' history from this Prometheus")


def _export(sub) -> None:
    e = sub.add_parser("export", help="print the Prometheus alert rules or the Grafana dashboard for the agents",
                       description="Print a file for the agents' Prometheus: alert-rules (YAML for `rule_files:`, "
                                   "thresholds from [problems] of the cluster file when there is one, else the "
                                   "defaults) or grafana-dashboard (JSON to import).")
    _common(e)
    e.add_argument("what", metavar="WHAT", choices=["alert-rules", "grafana-dashboard"],
                   help="alert-rules | grafana-dashboard")


def _drain(sub) -> None:
    d = _action(sub, "drain", "stop sending new requests to NODE; in-flight ones finish")
    d.add_argument("--wait", action="store_true", help="follow in-flight requests and live streams down to zero (the oldest stream's age and an "
                   "estimate to empty), then say it is safe to upgrade")
    d.add_argument("--timeout", type=float, default=600.0, metavar="S", help="give up waiting after S seconds (default 600)")
    d.add_argument("--cutoff", type=float, default=None, metavar="S",
                   help="after S seconds, cut what is still open (live streams) through every balancer: HAProxy "
                        "`shutdown sessions server`; refused for nginx. Says first how many streams it will cut; "
                        "implies --wait; asks to confirm on a terminal")
    d.add_argument("--yes", action="store_true", help="confirm --cutoff without asking (scripts)")


def _recover(sub) -> None:
    r = sub.add_parser("recover", help="finish or undo balancer changes an interrupted asrtop left half-done",
                       description="Finish (preferred) or undo every multi-step balancer change the intent journal "
                                   "says was interrupted (asrtop killed in the middle of `backup`): re-add a deleted "
                                   "server with its exact journaled line, re-enable its checks, remove probe "
                                   "servers, restore its state. Audited.")
    _common(r)
    r.add_argument("--dry-run", action="store_true", help="say what would be done on which balancer, change nothing")


def _demo(sub) -> None:
    demo = sub.add_parser("demo", help="start an embedded ASR cluster (HAProxy, simulated nodes, agents, load)")
    demo.add_argument("--nodes", type=int, default=4, metavar="N", help="simulated ASR nodes (default 4)")
    demo.add_argument("--load", type=int, default=16, metavar="C", help="concurrent file requests (default 16, 0 for none)")
    demo.add_argument("--streams", type=int, metavar="K",
                      help="concurrent FunASR WebSocket streams through HAProxy (default 3 per node, 0 for none)")
    demo.add_argument("--stream-mix", metavar="PCT:LEN,...",
                      help="percent of streams : length, e.g. 30:10s,40:45s,20:2m,10:5m (the default)")
    demo.add_argument("--headless", action="store_true", help="no TUI: run for --duration, print a summary")
    demo.add_argument("--duration", type=float, default=30.0, metavar="S", help="headless run time (default 30)")
    _read_only(demo)


COMMANDS = ("status", "drain", "ready", "maint", "weight", "backup", "recover", "rollout", "check", "export", "demo")
_VALUED = ("--config", "--prometheus")  # the top-level options that take a value


def command_in(argv: list[str]) -> str | None:
    """The sub-command `argv` names, as argparse will read it (None: none, or not a known one). `main` builds
    only that sub-command's parser: all of them cost `asrtop status` ~5 % of its start (a help formatter and
    gettext look-ups per argument)."""
    words = iter(argv)
    for word in words:
        if word == "--":
            return None
        if word.startswith("-"):
            if "=" not in word and len(word) > 2 and any(v.startswith(word) for v in _VALUED):
                next(words, None)  # its value (argparse takes a unique prefix of an option too)
            continue
        return word if word in COMMANDS else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or with `command` only that sub-command (what parsing its argv needs; the top
    level's --help and an unknown command list them all)."""

    def wanted(name: str) -> bool:
        return command is None or command == name

    p = _Parser(prog="asrtop", description="Operator console for GPU speech-recognition fleets behind HAProxy or nginx.",
                epilog="Exit codes: 0 done, 2 bad input, 3 refused by guardrail, 4 partial (some balancers changed), "
                       "5 unreachable, 6 drain --wait timed out or the drain was undone, 7 refused by a balancer, "
                       "8 a rollout stopped at a node, 130 interrupted (Ctrl+C); `check` follows Nagios: "
                       "0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.")
    p.add_argument("--version", action="version", version=f"asrtop {__version__}")
    _common(p, top=True)
    p.add_argument("--prometheus", metavar="URL", help="read node facts from this Prometheus instead of polling agents")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    if wanted("status"):
        s = sub.add_parser("status", help="print the fleet once (table, or --json)",
                           description="Print the fleet once: one row per node, notes, one summary line.",
                           epilog="Exit codes: 0 printed (what it found, e.g. a DOWN node, a model that differs or "
                                  "a node no balancer knows, is in the table and the notes); 5 a balancer could "
                                  "not be read, or the node-facts Prometheus could not be queried (the table is "
                                  "still printed, one line on stderr says which); 2 bad input or cluster file.")
        _common(s)
        s.add_argument("--json", action="store_true", help="machine-readable output")
        s.add_argument("--prometheus", metavar="URL", default=argparse.SUPPRESS,
                       help="read node facts from this Prometheus")
    if wanted("drain"):
        _drain(sub)
    if wanted("ready"):
        _action(sub, "ready", "put NODE back into rotation")
    if wanted("maint"):
        _action(sub, "maint", "take NODE out at once (in-flight requests on HAProxy are cut only by its own timeouts)")
    if wanted("weight"):
        w = _action(sub, "weight", "set NODE's weight on every balancer")
        w.add_argument("weight", metavar="N", help="0-256 for HAProxy, 1-1000 for nginx")
    if wanted("backup"):
        b = _action(sub, "backup", "mark NODE as backup (on) or primary (off)")
        b.add_argument("flag", metavar="on|off", choices=["on", "off"])
    if wanted("recover"):
        _recover(sub)
    if wanted("rollout"):
        _rollout(sub)
    if wanted("check"):
        _check(sub)
    if wanted("export"):
        _export(sub)
    if wanted("demo"):
        _demo(sub)
    return p


def entry() -> None:
    """The `asrtop` command (console script, `python -m asrtop`, `python -m asrtop.cli`): main(), then this
    process ends; what a one-shot command built is left to the exit (asrtop.commands._without_gc)."""
    sys.exit(main(ends_process=True))


def main(argv: list[str] | None = None, *, ends_process: bool = False) -> int:
    """`ends_process`: the process exits right after (entry()); in-process callers leave it False."""
    parser = build_parser(command_in(sys.argv[1:] if argv is None else argv))
    args, extra = parser.parse_known_args(argv)
    if extra:  # what parse_args() does, except that `check` says UNKNOWN (Nagios)
        parser.usage_exit = NAGIOS_UNKNOWN if args.command == "check" else BAD_INPUT
        if args.command == "check":
            parser.prog = "asrtop check"
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command in (None,):
            from asrtop.tui.run import run_tui

            return run_tui(args)
        if args.command == "demo":
            from asrtop.demo.run import run_demo

            return run_demo(args)
        from asrtop.commands import run_command

        return run_command(args, ends_process)
    except KeyboardInterrupt:
        print("asrtop: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    entry()
