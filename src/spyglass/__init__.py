"""Spyglass: a self-hosted similarity-search server."""

__version__ = "0.1.0"
