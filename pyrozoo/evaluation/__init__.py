"""Diagnostics (ArviZ), metrics and plots."""
