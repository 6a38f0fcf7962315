"""Guides matching the zoo models (structured, amortized, SWAG, collapsed, ...)."""
