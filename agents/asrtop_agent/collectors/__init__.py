"""Collectors: one class per concern, dependencies injected so tests feed stand-ins."""
