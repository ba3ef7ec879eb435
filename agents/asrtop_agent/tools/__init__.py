"""Operator tools shipped with the agent (run with `python -m asrtop_agent.tools.<name>`)."""
