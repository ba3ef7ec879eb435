"""Documented exit codes of every asrtop sub-command (also in `asrtop --help` and README)."""

OK = 0
ERROR = 1  # unexpected failure (a bug): reported in one line
BAD_INPUT = 2  # unknown node, bad weight, bad config, unknown flag
REFUSED_GUARDRAIL = 3  # min_ready or read-only refused the action
PARTIAL = 4  # some balancers changed, some did not: the output says which
UNREACHABLE = 5  # no balancer (or agent) could be reached; nothing changed
TIMED_OUT = 6  # drain --wait: the node still had in-flight requests at the timeout
DRAIN_UNDONE = 6  # drain --wait: the drain was undone while waiting (agent check, reload, another tool): not safe
REFUSED_BY_BALANCER = 7  # the balancer answered and refused (no admin level, nginx -t failed, ...); nothing changed
INTERRUPTED = 130  # stopped by SIGINT (Ctrl+C) after the change in progress was finished or undone and audited
ROLLOUT_STOPPED = 8  # rollout: a stage failed on a node; that node stays out, the rest is untouched (see the message)

# `asrtop check` follows the Nagios plugin convention instead: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
NAGIOS_OK, NAGIOS_WARNING, NAGIOS_CRITICAL, NAGIOS_UNKNOWN = 0, 1, 2, 3
