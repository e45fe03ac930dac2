"""An app factory for ``python -m uvicorn --factory``: the app ``spyglass serve`` runs.

Settings come from ``SPYGLASS_*`` variables and the metrics directory from
``PROMETHEUS_MULTIPROC_DIR``, the contract ``spyglass serve`` keeps with its
workers; the test sets the directory itself so that it can look at its files.
"""

from __future__ import annotations

from fastapi import FastAPI

from spyglass.app import create_app
from spyglass.settings import Settings


def app_factory() -> FastAPI:
    return create_app(Settings())
