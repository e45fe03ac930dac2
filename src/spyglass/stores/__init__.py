"""Stores keep collections and answer searches; ``open_store`` picks one from the settings.

``stores/base.py`` holds the contract; each backend is one module. The embedded
store (a data directory) is the default and, for now, the only one.
"""

from __future__ import annotations

from spyglass.errors import ConfigError
from spyglass.settings import Settings
from spyglass.stores.base import Store


def open_store(settings: Settings) -> Store:
    """The store the settings name: the embedded store in ``data_dir``."""
    from spyglass.stores.embedded import EmbeddedStore

    try:
        return EmbeddedStore(
            settings.data_dir,
            snapshot_tail=settings.snapshot_tail,
            exact_below=settings.exact_below,
        )
    except OSError as exc:
        raise ConfigError(f"cannot use data directory {settings.data_dir}: {exc}") from exc
