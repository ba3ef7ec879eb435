"""The asrtop Textual console. Entry point: asrtop.tui.run.run_tui(args)."""
