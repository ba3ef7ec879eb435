"""Screens: fleet (main), node detail, model view, confirmation and weight modals, help."""
