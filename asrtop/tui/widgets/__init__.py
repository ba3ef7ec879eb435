"""Widgets of the fleet screen: header summary, fleet table."""
